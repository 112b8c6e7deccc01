"""The feature model on OpenVINO: exported once on the driver, run by workers without TensorFlow.

The Keras model stays the source of truth (imagenet, a weights file or `random`); the driver
converts it to OpenVINO's IR (an .xml graph and a .bin of f32 weights) and ships both with
addFile. A Python worker then needs only OpenVINO: no TensorFlow import, no model build. It runs
in f32 (TensorFlow's features) or, asked for and where the CPU has it, bf16.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imagefeatures.model import (
    INPUT_SHAPE,
    build_feature_model,
    freeze_garbage_collector,
    worker_threads,
)

MODEL_NAME = "feature_model"
_COMPILED: dict[tuple[str, str], tuple[Callable[[np.ndarray], np.ndarray], str]] = {}


def new_export_folder() -> str:
    """A temporary folder for an export, removed when this process exits (workers fetch the
    files while the job runs)."""
    folder = tempfile.mkdtemp(prefix="imagefeatures-ir-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def export_ir(weights: str, folder: str | None = None) -> Path:
    """Build the Keras feature model for `weights` and save it as OpenVINO IR; the .xml path.
    Weights stay f32 in the .bin (no fp16 compression): the features must equal TensorFlow's."""
    import openvino as ov

    folder_path = Path(folder or new_export_folder())
    model = build_feature_model(weights)
    with warnings.catch_warnings():  # Keras notes that the tracer passes a tuple of inputs
        warnings.filterwarnings("ignore", "The structure of `inputs`", UserWarning)
        converted = ov.convert_model(model, input=[(-1, *INPUT_SHAPE)])
    # A name of its own per export: Spark refuses a second addFile of one name in a context.
    xml = folder_path / f"{MODEL_NAME}-{uuid.uuid4().hex[:12]}.xml"
    ov.save_model(converted, str(xml), compress_to_fp16=False)
    return xml


def get_feature_fn(
    xml_path: str, threads: int | None = None, precision: str = "f32"
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """(features of a batch (N, 224, 224, 3) -> (N, 1280), the precision it runs in), compiled
    on first use and kept for the life of the process, as the TensorFlow path does.

    f32 gives TensorFlow's features (within 1e-4). bf16 is asked for only where this CPU has
    it natively (AVX-512 BF16 or AMX); elsewhere the model runs in f32. Either way the
    precision returned is the one the compiled model reports, not the one asked for.
    """
    key = (xml_path, precision)
    if key not in _COMPILED:
        import openvino as ov

        core = ov.Core()
        threads = worker_threads(threads)
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in capabilities:
            precision = "f32"
        # No pinning: Spark runs one worker per task slot, and each one pinning its threads
        # from the first core on would put them all on the same cores.
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
            "ENABLE_CPU_PINNING": False,
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(xml_path, "CPU", config)
        request = compiled.create_infer_request()

        def run(batch: np.ndarray) -> np.ndarray:
            # copy(): the output tensor's memory is reused by the next inference.
            return request.infer({0: batch})[0].copy()

        run(np.zeros((1, *INPUT_SHAPE), np.float32))
        freeze_garbage_collector()
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        _COMPILED[key] = (run, ran)
    return _COMPILED[key]
