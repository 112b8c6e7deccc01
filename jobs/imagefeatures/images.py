"""Turning the bytes of one image file into the array MobileNetV2 expects."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

IMAGE_SIZE = (224, 224)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")


def _any_letter_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


# Hadoop glob for Spark's `pathGlobFilter`: .jpg, .jpeg and .png in any letter case.
IMAGE_GLOB = "*.{" + ",".join(_any_letter_case(ext) for ext in IMAGE_EXTENSIONS) + "}"
# The same rule as a regular expression, for listings made outside Spark (S3 keys). \Z, not $:
# Hadoop's glob matches whole names, and `$` would also match before a trailing newline.
IMAGE_NAME_PATTERN = r"(?i)\.(" + "|".join(IMAGE_EXTENSIONS) + r")\Z"

# Fruits-360 photos sit on white: transparent pixels become white, not black.
_BACKGROUND = (255, 255, 255)


EMPTY_FILE_ERROR = "empty file (0 bytes)"


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can fully decode."""


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def decode_rgb(content: bytes) -> Image.Image:
    """Decode image bytes into an RGB image, reading every pixel.

    Grayscale, CMYK, palette and transparent images are converted; anything Pillow cannot
    decode completely (empty, truncated, not an image) raises ImageDecodeError with the reason.
    """
    if not content:
        raise ImageDecodeError(EMPTY_FILE_ERROR)
    try:
        image = Image.open(io.BytesIO(content))
        image.load()  # Image.open is lazy: a truncated file only fails when pixels are read.
        if _has_alpha(image):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image if image.mode == "RGB" else image.convert("RGB")
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ...)
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc


def to_model_input(image: Image.Image) -> np.ndarray:
    """Resize an RGB image to 224x224 with Pillow's default filter and scale it for
    MobileNetV2: float32 (224, 224, 3) in [-1, 1], as the notebook's preprocessing does."""
    from keras.applications.mobilenet_v2 import preprocess_input

    resized = image.resize(IMAGE_SIZE)
    return preprocess_input(np.asarray(resized, dtype=np.float32))


def preprocess_image(content: bytes) -> np.ndarray:
    """Bytes of one image file -> MobileNetV2 input array; ImageDecodeError if undecodable."""
    return to_model_input(decode_rgb(content))
