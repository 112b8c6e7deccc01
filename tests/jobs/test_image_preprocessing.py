"""Decoding and preprocessing of one ordinary image (no Spark): the notebook's preprocessing and
its scaling to [-1, 1], other modes converted to RGB (transparency to white), the reasons that
undecodable files give, the image name rules and the listing's URIs, and a decoder that runs
without importing TensorFlow. Hostile and odd files are test_image_hostile_inputs.py's."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from imagefeatures.contract import IMAGE_NAME_PATTERN
from imagefeatures.images import (
    IMAGE_GLOB,
    ImageDecodeError,
    decode_rgb,
    preprocess_image,
    scale_to_unit_range,
)
from localdev.local_spark import JOBS_DIR
from tests.image_cases import bad_input_cases, jpeg_bytes, picture, png_bytes


def notebook_preprocess(content: bytes) -> np.ndarray:
    """The notebook's preprocessing, re-expressed: PIL resize, img_to_array, preprocess_input."""
    import io

    from keras.applications.mobilenet_v2 import preprocess_input
    from keras.utils import img_to_array

    return preprocess_input(img_to_array(Image.open(io.BytesIO(content)).resize([224, 224])))


def test_rgb_preprocessing_equals_the_notebooks():
    content = jpeg_bytes(picture(1))
    ours = preprocess_image(content)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, notebook_preprocess(content))


def test_values_are_scaled_to_minus_one_one():
    array = preprocess_image(jpeg_bytes(picture(2)))
    assert array.min() >= -1.0 and array.max() <= 1.0
    assert array.max() > 0.9  # the white background


@pytest.mark.parametrize("case", ["grayscale", "cmyk_jpeg", "rgba_png", "palette_png"])
def test_other_modes_are_converted_to_rgb(case):
    _, content, _ = bad_input_cases()[case]
    image = decode_rgb(content)
    assert image.mode == "RGB"
    assert preprocess_image(content).shape == (224, 224, 3)


def test_transparent_pixels_become_white():
    transparent = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert decode_rgb(png_bytes(transparent)).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("truncated_jpeg", "truncated"),
        ("zero_bytes", "empty file"),
        ("text_named_jpg", "cannot identify image file"),
    ],
)
def test_undecodable_files_raise_with_the_reason(case, reason):
    _, content, _ = bad_input_cases()[case]
    with pytest.raises(ImageDecodeError, match=reason):
        preprocess_image(content)


@pytest.mark.parametrize(
    ("name", "is_image"),
    [
        ("a.jpg", True),
        ("a.JPG", True),
        ("a.Jpeg", True),
        ("a.png", True),
        ("a.PNG", True),
        ("a.gif", False),
        ("a.jpg.txt", False),
        ("a.jpg\n", False),
        ("jpg", False),
    ],
)
def test_image_name_rules_agree(name, is_image):
    assert bool(re.search(IMAGE_NAME_PATTERN, name)) is is_image
    glob_alternatives = IMAGE_GLOB[len("*.{") : -1].split(",")
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    matches_glob = any(
        re.fullmatch(pattern, extension) is not None for pattern in glob_alternatives
    )
    assert matches_glob is is_image


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("s3://bucket/in/Pêche 2/r_0_100.jpg", ("bucket", "in/Pêche 2/r_0_100.jpg")),
        # Keys as they are: what Hadoop's paths broke on or rewrote is read as written.
        ("s3://bucket/in/10:30.jpg", ("bucket", "in/10:30.jpg")),
        ("s3://bucket/in//a/../_b.jpg", ("bucket", "in//a/../_b.jpg")),
        ("s3a://bucket/x.png", ("bucket", "x.png")),
        ("file:/tmp/Apple Réd/a b.jpg", None),
    ],
)
def test_a_manifest_path_is_read_by_its_key_as_written(path, location):
    from imagefeatures.image_reads import local_file_path, split_s3_path

    assert split_s3_path(path) == location
    if location is None:
        assert local_file_path(path) == "/tmp/Apple Réd/a b.jpg"


def test_scaling_equals_keras_preprocess_input_for_every_pixel_value():
    from keras.applications.mobilenet_v2 import preprocess_input

    levels = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(scale_to_unit_range(levels.copy()), preprocess_input(levels))


def test_preprocessing_does_not_import_tensorflow():
    """Workers of the OpenVINO runtime decode images without paying TensorFlow's import."""
    import subprocess
    import sys

    code = (
        "import sys; from imagefeatures.images import preprocess_image; "
        f"preprocess_image({jpeg_bytes(picture(3))!r}); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(JOBS_DIR)},
    )
    assert result.stdout.strip() == "[]"
