"""The MobileNetV2 feature model: weights specs, determinism, the imagenet download boundary."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from imagefeatures.contract import FEATURE_SIZE
from imagefeatures.images import preprocess_image
from imagefeatures.model import (
    ONEDNN_SWITCH,
    build_feature_model,
    get_feature_fn,
    model_batches,
    worker_tensorflow_env,
)
from tests.image_cases import jpeg_bytes, picture


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.stack([preprocess_image(jpeg_bytes(picture(seed))) for seed in range(3)])


def test_random_weights_give_varied_1280_d_features(batch):
    vectors = get_feature_fn("random")(batch)
    assert vectors.shape == (3, FEATURE_SIZE) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    # Healthy activations (Keras' default init would give ~1e-12) that differ per image.
    assert vectors.std() > 0.1
    assert np.abs(vectors[0] - vectors[1]).mean() > 0.01


def test_random_weights_are_the_same_in_another_process(batch, tmp_path):
    here = get_feature_fn("random")(batch[:1])
    np.save(tmp_path / "batch.npy", batch[:1])
    script = (
        "import sys, numpy as np; sys.path.insert(0, 'jobs');"
        "from imagefeatures.model import get_feature_fn;"
        f"np.save({str(tmp_path / 'out.npy')!r},"
        f" get_feature_fn('random')(np.load({str(tmp_path / 'batch.npy')!r})))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    np.testing.assert_array_equal(here, np.load(tmp_path / "out.npy"))


def test_weights_file_gives_the_same_features(batch, random_weights_file):
    from_file = get_feature_fn(str(random_weights_file))(batch)
    np.testing.assert_allclose(from_file, get_feature_fn("random")(batch), atol=1e-6)


def test_missing_weights_file_is_named():
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        build_feature_model("/nowhere.weights.h5")


class DownloadAttemptedError(Exception):
    pass


def test_imagenet_weights_go_through_keras_download(monkeypatch, tmp_path):
    """Stops at the download boundary: these machines cannot reach the weights host."""
    import keras

    requested = {}

    def refuse_download(fname, origin=None, **kwargs):
        requested.update(fname=fname, origin=origin)
        raise DownloadAttemptedError(origin)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", refuse_download)
    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", refuse_download)
    with pytest.raises(DownloadAttemptedError):
        build_feature_model("imagenet")
    assert requested["fname"] == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    assert requested["origin"].startswith("https://")


def test_weights_file_check_accepts_the_whole_model(random_weights_file):
    from imagefeatures.model import check_weights_file

    check_weights_file(str(random_weights_file))


def test_weights_file_check_rejects_other_files(tmp_path):
    import h5py

    from imagefeatures.model import check_weights_file

    not_hdf5 = tmp_path / "text.weights.h5"
    not_hdf5.write_text("not weights")
    with pytest.raises(ValueError, match="cannot be read as HDF5"):
        check_weights_file(str(not_hdf5))
    other = tmp_path / "other.weights.h5"
    with h5py.File(other, "w") as f:
        f["layers/dense/vars/0"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="holds 1 weight arrays of 9 values; the whole"):
        check_weights_file(str(other))


def test_worker_env_asks_for_onednn_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(ONEDNN_SWITCH, raising=False)
    assert worker_tensorflow_env() == {ONEDNN_SWITCH: "1"}
    monkeypatch.setenv(ONEDNN_SWITCH, "0")
    assert worker_tensorflow_env() == {ONEDNN_SWITCH: "0"}


@pytest.mark.parametrize(("switch", "enabled"), [("1", True), ("0", False)])
def test_tensorflow_reads_the_onednn_switch(switch, enabled):
    """The variable's name and value are the ones TensorFlow itself reads when it loads."""
    script = (
        "from tensorflow.python.util import _pywrap_util_port;"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    env = {**os.environ, ONEDNN_SWITCH: switch, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
    )
    assert done.stdout.strip() == str(enabled)


def test_model_batches_split_the_rest_in_powers_of_two():
    sizes = [s.stop - s.start for s in model_batches(85, 32)]
    assert sizes == [32, 32, 16, 4, 1]
    assert list(model_batches(0, 32)) == []


@pytest.mark.parametrize("batch_size", [1, 3, 32, 48])
def test_model_batches_cover_every_row_once_with_few_sizes(batch_size):
    seen_sizes = set()
    for count in range(200):
        slices = list(model_batches(count, batch_size))
        covered = [row for s in slices for row in range(count)[s]]
        assert covered == list(range(count))
        seen_sizes |= {s.stop - s.start for s in slices}
    assert all(size == batch_size or size & (size - 1) == 0 for size in seen_sizes)
    assert len(seen_sizes) <= batch_size.bit_length() + 1
