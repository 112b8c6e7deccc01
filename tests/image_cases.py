"""Image files for tests, made by the tests: good pictures and every kind of bad input."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def picture(seed: int, size: tuple[int, int] = (100, 100)) -> Image.Image:
    """A deterministic RGB picture: a coloured disc on white with some noise."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    radius = rng.uniform(0.2, 0.4) * min(height, width)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    array = np.full((height, width, 3), 255, dtype=np.uint8)
    array[disc] = rng.integers(0, 256, 3, dtype=np.uint8)
    noise = rng.integers(-12, 13, array.shape)
    return Image.fromarray(np.clip(array.astype(int) + noise, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_good_images(root: Path, labels: list[str], per_label: int, seed: int = 0) -> list[Path]:
    paths = []
    for label_index, label in enumerate(labels):
        for n in range(per_label):
            image = picture(seed + 1000 * label_index + n)
            paths.append(write(root / label / f"r_{n}_100.jpg", jpeg_bytes(image)))
    return paths


# name -> (relative path, bytes, expected outcome: "features" or "rejects")
@functools.cache
def bad_input_cases(seed: int = 99) -> dict[str, tuple[str, bytes, str]]:
    base = picture(seed)
    good_jpeg = jpeg_bytes(base)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    return {
        "truncated_jpeg": ("Broken/truncated.jpg", good_jpeg[: len(good_jpeg) // 2], "rejects"),
        "zero_bytes": ("Broken/empty.jpg", b"", "rejects"),
        "text_named_jpg": ("Broken/notes.jpg", b"this is not an image\n" * 20, "rejects"),
        "grayscale": ("Odd Modes/gray.jpg", jpeg_bytes(base.convert("L")), "features"),
        "cmyk_jpeg": ("Odd Modes/cmyk.jpg", jpeg_bytes(base.convert("CMYK")), "features"),
        "rgba_png": ("Odd Modes/rgba.png", png_bytes(rgba), "features"),
        "palette_png": ("Odd Modes/palette.png", png_bytes(base.convert("P")), "features"),
        "upper_case_ext": ("Odd Modes/LOUD.JPEG", good_jpeg, "features"),
        "very_large": ("Big/huge.jpg", jpeg_bytes(picture(seed, (6000, 4000))), "features"),
        "nested": ("Nested/deeper/Pomme rouge/n.jpg", good_jpeg, "features"),
        "accents_spaces": ("Pêche Jaune 2/r_0_100.jpg", good_jpeg, "features"),
    }


def encoded(image: Image.Image, format: str, **options) -> bytes:
    """`image` saved in any format Pillow writes (TIFF, BMP, WebP, GIF, PNG, JPEG...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _repeated_rows_zlib(row: bytes, height: int, rows_per_block: int = 64) -> bytes:
    """zlib stream of `row` repeated `height` times, compressing only one block of rows.

    Each block is a raw deflate stream ending in a full flush (byte-aligned, no references
    back), so one compressed block can be repeated; only the checksum reads every byte."""

    def block(rows: int) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(row * rows) + compressor.flush(zlib.Z_FULL_FLUSH)

    full, rest = divmod(height, rows_per_block)
    body = block(rows_per_block) * full + (block(rest) if rest else b"") + b"\x03\x00"
    checksum, chunk = 1, row * rows_per_block
    for _ in range(full):
        checksum = zlib.adler32(chunk, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    return b"\x78\xda" + body + struct.pack(">I", checksum)


def uniform_png(
    width: int,
    height: int,
    pixel: bytes,
    *,
    bit_depth: int = 8,
    color_type: int = 6,
    chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A PNG of one colour, written without ever holding its pixels: a 13000x13000 RGBA image
    (676 MB decoded) is 0.7 MB and takes a fraction of a second. `pixel` is one pixel's bytes
    as the PNG stores them (big-endian samples); `chunks` go before the image data (tRNS)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + b"".join(_png_chunk(kind, data) for kind, data in chunks)
        + _png_chunk(b"IDAT", _repeated_rows_zlib(b"\x00" + pixel * width, height))
        + _png_chunk(b"IEND", b"")
    )


def grey16_png(values: np.ndarray, transparent: int | None = None) -> bytes:
    """A 16-bit greyscale PNG (Pillow opens it as mode I;16) of `values` (uint16, 2-d)."""
    options = {} if transparent is None else {"transparency": transparent}
    return encoded(Image.fromarray(values.astype(np.uint16)), "PNG", **options)


# Header of an Encapsulated PostScript file: Pillow's EPS plugin would hand it to Ghostscript.
EPS_HEADER = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
    b"0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n"
)


def exif_rotated_jpeg(image: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG whose EXIF says "rotate for display" (6: 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    return jpeg_bytes(image, exif=exif.tobytes())


def apng_bytes(frames: list[Image.Image]) -> bytes:
    """An animated PNG of `frames`."""
    return encoded(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


def progressive_cmyk_jpeg(size: tuple[int, int]) -> bytes:
    """The costliest JPEG to decode per pixel: 4 components, no subsampling, progressive
    (libjpeg keeps every DCT coefficient of the image while decoding)."""
    image = Image.new("CMYK", size, (10, 200, 30, 5))
    return encoded(image, "JPEG", progressive=True, subsampling=0, quality=90)


def scan_bomb_jpeg(size: tuple[int, int], scans: int) -> bytes:
    """A small progressive JPEG whose last scan is repeated until it has `scans` scans: each
    one makes libjpeg decode the whole image again."""
    content = encoded(Image.new("RGB", size, (10, 200, 30)), "JPEG", progressive=True)
    last_scan = content[content.rfind(b"\xff\xda") : -2]  # to EOI
    assert content.count(b"\xff\xda") == 10  # libjpeg's progressive script
    return content[:-2] + last_scan * (scans - 10) + b"\xff\xd9"


@dataclass(frozen=True)
class HostileCase:
    relative: str
    content: bytes
    outcome: str  # "features" or "rejects"
    reason: str = ""  # for rejects: what the reason starts with


@functools.cache
def hostile_input_cases(seed: int = 7, largest: bool = True) -> dict[str, HostileCase]:
    """Files a careless or hostile folder holds, each with where it must land. `largest` adds
    the costliest images still accepted (8192x8192: an RGBA PNG and a progressive CMYK JPEG),
    which a memory bound must hold for."""
    base = picture(seed, (64, 48))
    good = jpeg_bytes(base)
    other = "not a JPEG or PNG file"
    cases = {
        "tiff_named_png": HostileCase(
            "Hostile/tiff.png", encoded(base, "TIFF"), "rejects", f"{other} (looks like TIFF)"
        ),
        "bmp_named_jpg": HostileCase(
            "Hostile/bmp.jpg", encoded(base, "BMP"), "rejects", f"{other} (looks like BMP)"
        ),
        "webp_named_png": HostileCase(
            "Hostile/webp.png", encoded(base, "WEBP"), "rejects", f"{other} (looks like WebP)"
        ),
        "gif_named_png": HostileCase(
            "Hostile/gif.png", encoded(base, "GIF"), "rejects", f"{other} (looks like GIF)"
        ),
        "eps_named_jpg": HostileCase(
            "Hostile/eps.jpg", EPS_HEADER, "rejects", f"{other} (looks like PostScript/EPS)"
        ),
        "bomb_rgba_png": HostileCase(
            "Hostile/bomb.png",
            uniform_png(13000, 13000, bytes((200, 60, 40, 128))),
            "rejects",
            "image too large: 13000x13000 is 169,000,000 pixels",
        ),
        "scan_bomb_jpeg": HostileCase(
            "Hostile/scans.jpg",
            scan_bomb_jpeg((2048, 2048), 500),
            "rejects",
            "image too costly to decode: a JPEG of more than 100 scans",
        ),
        "truncated_png": HostileCase(
            "Hostile/truncated.png", png_bytes(base)[:-40], "rejects", "OSError: "
        ),
        "empty_png": HostileCase("Hostile/empty.png", b"", "rejects", "empty file (0 bytes)"),
        "grey16_png": HostileCase(
            "Odd/grey16.png",
            grey16_png(np.linspace(0, 65535, 64 * 48).reshape(48, 64)),
            "features",
        ),
        "cmyk_jpeg": HostileCase("Odd/cmyk.jpg", jpeg_bytes(base.convert("CMYK")), "features"),
        "exif_rotated_jpeg": HostileCase("Odd/rotated.jpg", exif_rotated_jpeg(base), "features"),
        "animated_png": HostileCase(
            "Odd/animated.png", apng_bytes([base, picture(seed + 1, (64, 48))]), "features"
        ),
        "good_jpeg": HostileCase("Good/good.jpg", good, "features"),
    }
    if largest:
        cases["largest_rgba_png"] = HostileCase(
            "Large/rgba.png", uniform_png(8192, 8192, bytes((200, 60, 40, 128))), "features"
        )
        cases["largest_cmyk_jpeg"] = HostileCase(
            "Large/cmyk.jpg", progressive_cmyk_jpeg((8192, 8192)), "features"
        )
    return cases
