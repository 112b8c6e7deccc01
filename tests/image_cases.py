"""Image files for tests, made by the tests: good pictures and every kind of bad input."""

from __future__ import annotations

import functools
import io
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
