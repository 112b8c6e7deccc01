"""The limit: one plain Python process decoding and running the same model, no Spark.

Prints one JSON line: images, runtime, precision that ran, model build seconds (for OpenVINO,
the export too), decode + inference seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "jobs"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--batch-size", type=int, default=None, help="default: our job's")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from imagefeatures.contract import DEFAULT_BATCH_SIZE, PRECISIONS, RUNTIMES

    parser.add_argument("--runtime", choices=RUNTIMES, default="tensorflow")
    parser.add_argument("--precision", choices=PRECISIONS, default="f32")
    args = parser.parse_args()
    from imagefeatures.images import preprocess_image
    from imagefeatures.model import get_feature_fn, model_batches, worker_tensorflow_env

    os.environ.update(worker_tensorflow_env())  # TensorFlow as our job's workers run it

    paths = sorted(p for p in args.input.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    started = time.time()
    precision = "f32"
    if args.runtime == "openvino":  # the job's export, then every core for one model call
        from imagefeatures import openvino_runtime

        xml = openvino_runtime.export_ir(args.weights)
        feature_fn, precision = openvino_runtime.get_feature_fn(str(xml), None, args.precision)
    else:
        feature_fn = get_feature_fn(args.weights)
    feature_fn(np.zeros((1, 224, 224, 3), np.float32))  # trace the graph once
    built = time.time()
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE  # the same model calls as our job's
    rows = 0
    for batch in model_batches(len(paths), batch_size):
        rows += len(feature_fn(np.stack([preprocess_image(p.read_bytes()) for p in paths[batch]])))
    finished = time.time()
    print(
        json.dumps(
            {
                "images": rows,
                "runtime": args.runtime,
                "precision": precision,  # what ran: bf16 falls back where the CPU lacks it
                "build_seconds": built - started,
                "work_seconds": finished - built,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
