"""The MobileNetV2 feature model: built from a weights spec, once per Python process."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator

import numpy as np

from imagefeatures.contract import WEIGHTS_SUFFIX, weights_problem

INPUT_SHAPE = (224, 224, 3)
RANDOM_WEIGHTS_SEED = 20240517


def init_random_weights(model, seed: int = RANDOM_WEIGHTS_SEED) -> None:
    """Give every kernel He-normal weights drawn from a fixed seed.

    Keras' default (Glorot over the whole depthwise kernel, batch norm at identity) makes
    MobileNetV2's activations vanish to ~1e-12, which would make every image look alike.
    He scaling with each layer's true fan-in keeps features varied, and NumPy's seeded
    generator makes them identical in every process, run after run.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        # DepthwiseConv2D is not a Conv2D subclass in Keras 3: name all three.
        if isinstance(
            layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
        ):
            kernel = layer.kernel
            shape = tuple(kernel.shape)
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                fan_in = shape[0] * shape[1]  # each output channel sees one input channel
            else:
                fan_in = int(np.prod(shape[:-1]))
            kernel.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype("float32"))


def build_classifier(weights: str):
    """The whole MobileNetV2 (classifier included) for `imagenet`, `random` or a weights file."""
    from keras.applications import MobileNetV2

    if weights == "random":
        model = MobileNetV2(weights=None, include_top=True, input_shape=INPUT_SHAPE)
        init_random_weights(model)
        return model
    if weights != "imagenet" and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights}")
    return MobileNetV2(weights=weights, include_top=True, input_shape=INPUT_SHAPE)


def build_feature_model(weights: str):
    """MobileNetV2 without its classifier: the 1280-d output of the layer before it."""
    import keras

    classifier = build_classifier(weights)
    return keras.Model(inputs=classifier.input, outputs=classifier.layers[-2].output)


def check_weights_file(path: str) -> None:
    """Raise ValueError unless `path` is an HDF5 weights file with MobileNetV2's arrays."""
    if problem := weights_problem(path):
        raise ValueError(f"{path}: {problem}")


def compile_feature_fn(model) -> Callable[[np.ndarray], np.ndarray]:
    """A traced, inference-only call of the model: one graph for every batch size, without
    the per-call set-up that `model.predict` pays on each batch."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32)])
    def features(batch):
        return model(batch, training=False)

    def run(batch: np.ndarray) -> np.ndarray:
        return features(tf.constant(batch, dtype=tf.float32)).numpy()

    return run


def model_batches(count: int, batch_size: int) -> Iterator[slice]:
    """Slices of `count` rows for the model calls: whole batches, then the rest in powers of
    two (21 -> 16, 4, 1).

    TensorFlow's oneDNN kernels are built and kept per batch size: with every size from 1 to
    31 showing up as the last batch of some task, each worker grew by 150 MiB. Powers of two
    bound the sizes to about log2(batch_size) + 2, and cost nothing measurable: 18.5 to 20.9
    ms of CPU per image at every size from 1 to 32 (BENCHMARKS.md).
    """
    start = 0
    while count - start >= batch_size:
        yield slice(start, start + batch_size)
        start += batch_size
    while start < count:
        size = 1 << ((count - start).bit_length() - 1)
        yield slice(start, start + size)
        start += size


ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def worker_tensorflow_env() -> dict[str, str]:
    """Environment for a process that runs the model, read by TensorFlow when it loads.

    TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or
    AMX; without them (the AMD EPYC of our CI machines) MobileNetV2 ran 1.9 times slower
    (BENCHMARKS.md). They change features by float round-off only: at most 2e-5 on values up
    to 6. TF_ENABLE_ONEDNN_OPTS=0 in the driver's environment turns them off.
    """
    return {ONEDNN_SWITCH: os.environ.get(ONEDNN_SWITCH, "1")}


_FEATURE_FNS: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def worker_threads(threads: int | None) -> int:
    """Threads for one model call in a worker (0: the runtime's own choice):
    IMAGEFEATURES_TF_THREADS if set, else the task's cpus."""
    return int(os.environ.get("IMAGEFEATURES_TF_THREADS") or threads or 0)


def limit_threads(threads: int | None) -> None:
    """Give TensorFlow `threads` cores for one op, before its runtime starts.

    Spark runs one Python worker per task slot; each TensorFlow defaulting to every core
    makes them fight for the same cores. IMAGEFEATURES_TF_THREADS overrides the value.
    """
    threads = worker_threads(threads)
    if threads < 1:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime already started in this process: keep its settings
        pass


def get_feature_fn(weights: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The feature function for `weights`, built on first use and kept for the life of the
    process, so a reused Spark Python worker builds the model once for all its tasks."""
    if weights not in _FEATURE_FNS:
        limit_threads(threads)
        feature_fn = compile_feature_fn(build_feature_model(weights))
        feature_fn(np.zeros((1, *INPUT_SHAPE), np.float32))  # trace the graph now
        freeze_garbage_collector()
        _FEATURE_FNS[weights] = feature_fn
    return _FEATURE_FNS[weights]


def freeze_garbage_collector() -> None:
    """Move every object alive now (TensorFlow, Keras, the model and its traced graph, all
    kept for the life of the process) out of the garbage collector's sight.

    Spark's Python worker runs gc.collect() after every task; with those objects tracked,
    each call walks all of them: 0.2 CPU-s per task of 32 images, measured (BENCHMARKS.md).
    """
    gc.collect()
    gc.freeze()


def save_random_weights(path: str) -> str:
    """Write the `random` model's full weights to `path` (a Keras .weights.h5 file)."""
    if not path.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"Keras weights files must end with {WEIGHTS_SUFFIX}: {path}")
    build_classifier("random").save_weights(path)
    return path
