"""Turning the bytes of one image file into the array MobileNetV2 expects.

What is accepted, and why (README "What featurize accepts"):

- Only JPEG and PNG are decoded, whatever the file's name says. Pillow would otherwise open any
  format it knows (TIFF, BMP, WebP, GIF, and EPS through Ghostscript); those are rejected
  before any of their plugins runs, with the format the first bytes look like.
- Memory per image is bounded: the header's size is checked before any pixel is decoded, so
  one file costs a worker at most about MAX_DECODE_BYTES beyond the file itself.
- Time per image is bounded too: a JPEG of more than MAX_JPEG_SCANS scans is rejected before
  it is decoded (libjpeg decodes the whole image again for each scan, and sets no limit).
- Features are of the stored pixels, as in the notebook: EXIF orientation is ignored, an
  animated PNG gives its first frame, CMYK is converted by Pillow, transparent pixels become
  white and 16-bit values are scaled to 8 bits (>> 8).
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from imagefeatures.contract import IMAGE_EXTENSIONS

IMAGE_SIZE = (224, 224)
# Pillow format names that are decoded; every other format is rejected unopened.
ACCEPTED_FORMATS = ("JPEG", "PNG")


def _any_letter_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


# Hadoop glob for Spark's `pathGlobFilter`: the contract's IMAGE_NAME_PATTERN (used for S3
# listings outside Spark) as a glob: .jpg, .jpeg and .png in any letter case.
IMAGE_GLOB = "*.{" + ",".join(_any_letter_case(ext) for ext in IMAGE_EXTENSIONS) + "}"

# Fruits-360 photos sit on white: transparent pixels become white, not black.
_BACKGROUND = (255, 255, 255)

# Memory one image may take while it is decoded, beyond its file's bytes: a worker must stay
# well under 1 GiB of extra memory for any single file (it already holds TensorFlow).
MAX_DECODE_BYTES = 768 * 2**20
# Peak bytes per pixel of the costliest accepted path. Pillow keeps every 3- or 4-channel
# image at 4 bytes per pixel (RGB too), and libjpeg holds a progressive or multi-scan JPEG's
# DCT coefficients for the whole image while decoding (2 bytes per coefficient, up to 4
# components at full resolution: 8 bytes per pixel for CMYK). So the worst case is a CMYK
# progressive JPEG: 4 (Pillow's image) + 8 (coefficients) = 12. The conversions after the
# decode work in strips of rows (_to_rgb_in_strips), so they add only the 4-byte RGB result:
# 8 per pixel for RGBA, LA, CMYK; 2 + 4 for 16-bit grey; 1 + 4 for L and P.
PEAK_BYTES_PER_PIXEL = 12
# 768 MiB / 12 = 67,108,864 pixels (8192x8192), below Pillow's own bomb warning (89.5 M).
MAX_PIXELS = MAX_DECODE_BYTES // PEAK_BYTES_PER_PIXEL
# Pixels converted at once in the strip-wise conversions: about 20 MiB of temporaries.
_STRIP_PIXELS = 2**20

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

# Scans a JPEG may have. Each scan of a progressive JPEG refines every block of the image, so
# its decode costs the pixels times the scans: one scan repeated 2,000 times in a 0.46 MB
# 8192x8192 file took 77 CPU-seconds. Encoders write far fewer (libjpeg's progressive script
# 10; optimized scripts such as jpegtran's or mozjpeg's a few dozen at most).
MAX_JPEG_SCANS = 100
# Where a scan's entropy-coded data ends: a marker, i.e. 0xFF followed by neither a stuffed
# 0x00 nor a restart marker (0xD0-0xD7).
_END_OF_SCAN_DATA = re.compile(rb"\xff[^\x00\xd0-\xd7]")
# Markers that stand alone, without a length: TEM, RST0-7, SOI.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})

EMPTY_FILE_ERROR = "empty file (0 bytes)"
TOO_COSTLY = "image too costly to decode"
NOT_JPEG_OR_PNG = "not a JPEG or PNG file"
TOO_LARGE = "image too large"

# First bytes of formats people mistake for photos, to say what a rejected file looks like.
# Only compared, never parsed: naming a format runs none of its code.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "BigTIFF"),
    (0, b"MM\x00+", "BigTIFF"),
    (0, b"BM", "BMP"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, b"%!PS", "PostScript/EPS"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS"),
    (0, b"%PDF", "PDF"),
    (0, b"8BPS", "Photoshop PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (4, b"jP  \r\n\x87\n", "JPEG 2000"),
    (8, b"avif", "AVIF"),
    (8, b"heic", "HEIC"),
    (8, b"heix", "HEIC"),
    (8, b"mif1", "HEIF"),
    (0, b"qoif", "QOI"),
)


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can fully decode."""


def looks_like(content: bytes) -> str | None:
    """The name of the format `content` starts like, from its first bytes alone; None if
    none of the known signatures matches."""
    for offset, signature, name in _SIGNATURES:
        if content[offset : offset + len(signature)] == signature:
            return name
    return None


def jpeg_scans(content: bytes, stop_after: int = MAX_JPEG_SCANS) -> int:
    """How many scans (SOS segments) a JPEG's image has, found by walking its segments (an
    EXIF thumbnail's scans are inside its APP1 segment, so not counted); counting stops past
    `stop_after`. A malformed file is counted as far as it goes: the decoder rejects it."""
    scans, position, end = 0, 2, len(content)  # after SOI
    while position + 1 < end and scans <= stop_after:
        if content[position] != 0xFF:
            break  # not a marker where one must be
        marker = content[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == 0xD9:  # EOI
            break
        elif marker in _STANDALONE_MARKERS:
            position += 2
        else:
            segment_end = position + 2 + int.from_bytes(content[position + 2 : position + 4])
            if marker != 0xDA:
                position = segment_end
                continue
            scans += 1
            data_end = _END_OF_SCAN_DATA.search(content, segment_end)
            position = data_end.start() if data_end else end
    return scans


def _check_decode_cost(image: ImageFile.ImageFile, content: bytes) -> None:
    if image.format == "JPEG" and jpeg_scans(content) > MAX_JPEG_SCANS:
        raise ImageDecodeError(
            f"{TOO_COSTLY}: a JPEG of more than {MAX_JPEG_SCANS} scans (each scan decodes "
            "the whole image again)"
        )


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _open(content: bytes) -> ImageFile.ImageFile:
    """Open (header only) a JPEG or PNG no larger than MAX_PIXELS and of at most
    MAX_JPEG_SCANS scans; ImageDecodeError otherwise."""
    # Pillow's DecompressionBombWarning (over Image.MAX_IMAGE_PIXELS) is recorded rather than
    # printed, here only: the filter is restored on exit and the module setting is left alone.
    # (warnings filters are process-wide; a Python worker decodes on one thread.)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(content), formats=list(ACCEPTED_FORMATS))
        except UnidentifiedImageError as exc:
            kind = looks_like(content)
            detail = f"looks like {kind}" if kind else "cannot identify image file"
            raise ImageDecodeError(f"{NOT_JPEG_OR_PNG} ({detail})") from exc
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"{TOO_LARGE}: {exc}") from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"{TOO_LARGE}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} ({MAX_DECODE_BYTES // 2**20} MiB to decode)"
        )
    # Below our limit but over one set lower in Pillow by whoever runs this: still a reject.
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            raise ImageDecodeError(f"{TOO_LARGE}: {warning.message}")
    _check_decode_cost(image, content)
    return image


def _strips(size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    width, height = size
    rows = max(1, _STRIP_PIXELS // max(1, width))
    return [(0, top, width, min(height, top + rows)) for top in range(0, height, rows)]


def _flatten_on_white(strip: Image.Image) -> Image.Image:
    rgba = strip.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _sixteen_bit_to_rgb(strip: Image.Image) -> Image.Image:
    """Scale 16-bit grey to 8 bits (value >> 8: 65535 -> 255, 32768 -> 128, 1000 -> 3) where
    Pillow's convert() would clip every value over 255 to white; a tRNS grey level is white."""
    values = np.asarray(strip)
    grey = np.clip(values >> 8, 0, 255).astype(np.uint8)
    transparent = strip.info.get("transparency")
    if isinstance(transparent, int):
        grey[values == transparent] = 255
    return Image.fromarray(grey).convert("RGB")


def _to_rgb_in_strips(image: Image.Image, convert) -> Image.Image:
    """`convert` applied strip by strip into one RGB image: the same pixels as converting the
    whole image (every conversion used is per pixel), with temporaries of one strip only. The
    whole-image RGBA path took 5 full-size copies (3.2 GiB for 13000x13000)."""
    rgb = Image.new("RGB", image.size)
    for box in _strips(image.size):
        rgb.paste(convert(image.crop(box)), box[:2])
    return rgb


def decode_rgb(content: bytes) -> Image.Image:
    """Decode JPEG or PNG bytes into an RGB image, reading every pixel.

    Grayscale, CMYK, palette, 16-bit and transparent images are converted; anything else
    (empty, truncated, another format, over MAX_PIXELS) raises ImageDecodeError with the reason.
    """
    if not content:
        raise ImageDecodeError(EMPTY_FILE_ERROR)
    try:
        image = _open(content)
        image.load()  # Image.open is lazy: a truncated file only fails when pixels are read.
        if image.mode in _SIXTEEN_BIT_MODES:
            return _to_rgb_in_strips(image, _sixteen_bit_to_rgb)
        if _has_alpha(image):
            return _to_rgb_in_strips(image, _flatten_on_white)
        return image if image.mode == "RGB" else image.convert("RGB")
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ...)
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc


def to_model_input(image: Image.Image) -> np.ndarray:
    """Resize an RGB image to 224x224 with Pillow's default filter and scale it for
    MobileNetV2: float32 (224, 224, 3) in [-1, 1], as the notebook's preprocessing does."""
    # No JPEG draft() here: decoding at 1/2..1/8 scale changes the resized pixels (by up to 48
    # levels on a 500x500 photo), so features would leave the notebook's. Larger images are
    # rejected instead.
    resized = image.resize(IMAGE_SIZE)
    return scale_to_unit_range(np.asarray(resized, dtype=np.float32))


def scale_to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """[0, 255] -> [-1, 1] in place, with the same two float32 operations as Keras'
    mobilenet_v2.preprocess_input (mode "tf"), so the result is bit for bit the same; without
    importing Keras, whose import loads TensorFlow into every Python worker (seconds each)."""
    pixels /= 127.5
    pixels -= 1.0
    return pixels


def preprocess_image(content: bytes) -> np.ndarray:
    """Bytes of one image file -> MobileNetV2 input array; ImageDecodeError if undecodable."""
    return to_model_input(decode_rgb(content))
