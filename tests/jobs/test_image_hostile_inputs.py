"""Hostile or odd files on the decoder (no Spark): only JPEG and PNG are decoded, any other file
is rejected with its reason (EPS never reaching Pillow's EPS plugin or Ghostscript), memory is
bounded by a pixel limit checked from the header, 16-bit samples are scaled to 8 bits, transparency
is flattened strip by strip, EXIF orientation is ignored, an animated PNG gives its first frame and
a CMYK JPEG is converted by Pillow."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from imagefeatures import images
from imagefeatures.images import MAX_PIXELS, ImageDecodeError, decode_rgb
from tests.image_cases import (
    EPS_HEADER,
    apng_bytes,
    encoded,
    exif_rotated_jpeg,
    grey16_png,
    hostile_input_cases,
    jpeg_bytes,
    picture,
    png_bytes,
    uniform_png,
)


def reason(content: bytes) -> str:
    with pytest.raises(ImageDecodeError) as raised:
        decode_rgb(content)
    return str(raised.value)


REJECTED = sorted(
    name for name, case in hostile_input_cases(largest=False).items() if case.outcome == "rejects"
)


@pytest.mark.parametrize("name", REJECTED)
def test_hostile_files_are_rejected_with_their_reason(name):
    case = hostile_input_cases(largest=False)[name]
    assert reason(case.content).startswith(case.reason)


@pytest.mark.parametrize(
    ("image_format", "looks_like"),
    [("TIFF", "TIFF"), ("BMP", "BMP"), ("WEBP", "WebP"), ("GIF", "GIF"), ("ICO", "ICO")],
)
def test_formats_pillow_knows_are_not_decoded(image_format, looks_like):
    content = encoded(picture(3, (32, 32)), image_format)
    Image.open(io.BytesIO(content)).load()  # Pillow alone decodes it
    assert reason(content) == f"not a JPEG or PNG file (looks like {looks_like})"


def test_unknown_bytes_say_they_are_not_identified():
    assert reason(b"GIF88 no such thing" * 10) == (
        "not a JPEG or PNG file (cannot identify image file)"
    )


@pytest.mark.parametrize(
    "content",
    [EPS_HEADER, b"\xc5\xd0\xd3\xc6" + struct.pack("<7I", 30, 100, 0, 0, 0, 0, 0)],
    ids=["eps", "binary_eps"],
)
def test_eps_never_reaches_pillows_eps_plugin_or_ghostscript(content, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("Pillow's EPS plugin ran")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", refuse)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    assert reason(content).startswith("not a JPEG or PNG file (looks like ")
    assert calls == []


def test_reject_reasons_of_each_kind_are_distinct():
    base = picture(4, (40, 30))
    kinds = {
        "empty": reason(b""),
        "other format": reason(encoded(base, "TIFF")),
        "unidentified": reason(b"plain text, not an image\n" * 4),
        "too large": reason(uniform_png(9000, 9000, b"\x00\x00\x00\x00")),
        "truncated": reason(jpeg_bytes(base)[:300]),
    }
    starts = {
        "empty": "empty file (0 bytes)",
        "other format": "not a JPEG or PNG file (looks like TIFF)",
        "unidentified": "not a JPEG or PNG file (cannot identify image file)",
        "too large": "image too large: 9000x9000 is 81,000,000 pixels",
        "truncated": "OSError: ",  # Pillow's own words, as before
    }
    for kind, text in kinds.items():
        assert text.startswith(starts[kind]), (kind, text)
    assert "truncated" in kinds["truncated"].lower()
    assert len(set(kinds.values())) == len(kinds)


def header_only_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height, whose image data stops after 2 bytes."""
    whole = uniform_png(width, height, b"\x00", color_type=0)
    idat = whole.index(b"IDAT") - 4
    return whole[:idat] + struct.pack(">I", 2) + b"IDAT\x78\xda" + b"\x00" * 4


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    side = int(MAX_PIXELS**0.5)
    assert side * side == MAX_PIXELS  # 8192x8192
    # No pixel data: a reject for size, not for truncation, means no pixel was read.
    assert reason(header_only_png(side + 1, side)) == (
        f"image too large: {side + 1}x{side} is {(side + 1) * side:,} pixels, over the limit "
        f"of {MAX_PIXELS:,} (768 MiB to decode)"
    )
    assert "truncated" in reason(header_only_png(side, side))


def test_the_largest_accepted_size_decodes():
    side = int(MAX_PIXELS**0.5)
    image = decode_rgb(uniform_png(side, side, b"\x50", color_type=0))
    assert (image.size, image.getpixel((side - 1, side - 1))) == ((side, side), (80, 80, 80))


def test_limit_allows_for_the_costliest_decode():
    # 12 bytes per pixel (progressive CMYK JPEG) at the limit stays under 1 GiB.
    assert MAX_PIXELS * images.PEAK_BYTES_PER_PIXEL < 2**30


@pytest.mark.parametrize(("limit", "stated"), [(1000, 1000), (700, 1400)])
def test_pillows_bomb_check_becomes_a_reject_without_changing_warnings(limit, stated, monkeypatch):
    """Where someone set Pillow's limit below ours, its warning (over the limit) and its error
    (over twice the limit, stated as such) are rejects too, and the process's warning filters
    stay as they were."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping decode_rgb would fail the test
        text = reason(png_bytes(picture(5, (40, 40))))
    assert text.startswith(f"image too large: Image size (1600 pixels) exceeds limit of {stated} ")
    assert warnings.filters == filters


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped():
    values = np.array([[0, 255, 256, 1000, 32768, 65535]], dtype=np.uint16)
    content = grey16_png(values)
    assert Image.open(io.BytesIO(content)).mode == "I;16"  # what Pillow 13 opens it as
    grey = np.asarray(decode_rgb(content))
    assert grey[0, :, 0].tolist() == [0, 0, 1, 3, 128, 255]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_16_bit_grey_transparent_level_becomes_white():
    values = np.array([[0, 1000, 1001, 65535]], dtype=np.uint16)
    rgb = decode_rgb(grey16_png(values, transparent=1000))
    assert [rgb.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0),
        (255, 255, 255),
        (3, 3, 3),
        (255, 255, 255),
    ]


@pytest.mark.parametrize(
    ("color_type", "pixel", "mode", "rgb"),
    [
        (2, (1000, 32768, 65535), "RGB", (3, 128, 255)),
        (6, (1000, 32768, 65535, 65535), "RGBA", (3, 128, 255)),
        (4, (32768, 65535), "RGBA", (128, 128, 128)),  # grey + alpha
    ],
)
def test_16_bit_colour_pngs_keep_the_high_byte(color_type, pixel, mode, rgb):
    """Pillow 13 itself opens 16-bit colour and grey+alpha PNGs as 8-bit RGB(A), keeping each
    sample's high byte, which is the same >> 8 scaling."""
    content = uniform_png(
        3, 2, struct.pack(f">{len(pixel)}H", *pixel), bit_depth=16, color_type=color_type
    )
    assert Image.open(io.BytesIO(content)).mode == mode
    assert decode_rgb(content).getpixel((2, 1)) == rgb


def whole_image_flatten(content: bytes) -> Image.Image:
    """The conversion before strips: every step on the whole image."""
    image = Image.open(io.BytesIO(content))
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def transparent_cases() -> dict[str, bytes]:
    base = picture(6, (37, 23))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    return {
        "rgba": png_bytes(rgba),
        "la": png_bytes(rgba.convert("LA")),
        "palette_trns": encoded(base.convert("P"), "PNG", transparency=3),
        "rgb_trns": encoded(base, "PNG", transparency=base.getpixel((0, 0))),
        "grey_trns": encoded(
            base.convert("L"), "PNG", transparency=base.convert("L").getpixel((0, 0))
        ),
    }


@pytest.mark.parametrize("case", sorted(transparent_cases()))
def test_strips_give_the_pixels_of_the_whole_image_conversion(case, monkeypatch):
    content = transparent_cases()[case]
    monkeypatch.setattr(images, "_STRIP_PIXELS", 37 * 4)  # 6 strips, the last a short one
    strips = np.asarray(decode_rgb(content))
    assert len(images._strips((37, 23))) == 6
    np.testing.assert_array_equal(strips, np.asarray(whole_image_flatten(content)))
    assert (strips == 255).any() and (strips < 255).any()


def test_exif_orientation_is_ignored():
    """Features are of the stored pixels, as the notebook computes them: not rotated."""
    base = picture(8, (64, 40))
    rotated = exif_rotated_jpeg(base, orientation=6)
    assert Image.open(io.BytesIO(rotated)).getexif()[0x0112] == 6
    image = decode_rgb(rotated)
    assert image.size == (64, 40)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(decode_rgb(jpeg_bytes(base))))


def test_animated_png_gives_its_first_frame():
    first, second = picture(9, (32, 24)), picture(10, (32, 24))
    content = apng_bytes([first, second])
    assert Image.open(io.BytesIO(content)).n_frames == 2
    np.testing.assert_array_equal(np.asarray(decode_rgb(content)), np.asarray(first))


def test_cmyk_jpeg_is_converted_by_pillow():
    base = picture(11, (64, 48))
    content = jpeg_bytes(base.convert("CMYK"))
    assert Image.open(io.BytesIO(content)).mode == "CMYK"
    image = decode_rgb(content)
    assert image.mode == "RGB"
    difference = np.abs(np.asarray(image, dtype=int) - np.asarray(base, dtype=int))
    assert difference.mean() < 4  # JPEG's loss only: no channel swapped or inverted
