"""A weekly run after the catalogue grew by 1%: the featurize step against the first run's.

    python -m bench.incremental [--images 20000] [--new-share 0.01]

The real DAG runs twice on the local EMR emulator: a first, full run over `--images` images,
then, after `--new-share` of that many new images were added in new label folders, an
incremental run (the DAG's default). Measured per featurize step: its spark-submit seconds,
what EMR runs. The emulator's own work around it, copying the step's S3 inputs to local folders
and its outputs back (EMRFS reads and writes S3 directly), is reported beside it. Checked: the
second run reused every vector of the first bit for bit and featurized only the new images.
Target: the second featurize step takes at most 0.15x the first's.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.run_bench import cpu_description, ensure_images
from localdev.dag_run import (
    emulated_airflow,
    ensure_bucket,
    run_dag,
    run_output_uri,
    s3_client,
    upload_tree,
)
from localdev.local_spark import REPO_ROOT
from localdev.sample_data import generate_images

INPUT_URI = "s3://bench-fruit-images/fruits/"
OUTPUT_URI = "s3://bench-fruit-features/runs/"
TARGET_RATIO = 0.15


def featurize_seconds(run_id: str) -> dict[str, float]:
    """Where the run's featurize step spent its time, from the emulator's record of it."""
    from moto.emr.models import emr_backends

    for regions in emr_backends.values():
        for backend in regions.values():
            for cluster in backend.clusters.values():
                if {t["Key"]: t["Value"] for t in cluster.tags}.get("run_id") != run_id:
                    continue
                for step in cluster.steps:
                    if step.name == "featurize":
                        seconds = dict(step.emulator_seconds)
                        wall = step.end_date_time - step.start_date_time
                        return {**seconds, "step_wall": wall.total_seconds()}
    raise LookupError(f"no featurize step of run {run_id}")


def vectors(s3: Any, run_uri: str) -> dict[str, bytes]:
    """{path: the vector's float32 bytes} of a run's features."""
    import numpy as np
    import pyarrow.parquet as pq

    bucket, _, prefix = (run_uri + "features/").removeprefix("s3://").partition("/")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".parquet"):
                continue
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body), columns=["path", "features"])
            for path, vector in zip(
                table.column("path").to_pylist(), table.column("features").to_pylist(), strict=True
            ):
                found[path] = np.asarray(vector, dtype=np.float32).tobytes()
    return found


def new_images(folder: Path, count: int) -> Path:
    """`count` new images, in label folders the first run did not have."""
    shutil.rmtree(folder, ignore_errors=True)
    generate_images(folder, count, seed=2)
    for label in list(folder.iterdir()):
        label.rename(label.with_name(f"{label.name} week 2"))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench" / "work")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    images = ensure_images(work, args.images)
    added = new_images(work / "incremental_new", max(1, round(args.images * args.new_share)))
    run_conf = {
        "input_uri": INPUT_URI,
        "output_uri": OUTPUT_URI,
        "weights": "random",
        "poke_interval_seconds": 1,
    }
    started = time.monotonic()
    state = work / "incremental_state"
    shutil.rmtree(state / "emulator", ignore_errors=True)
    with emulated_airflow(state) as emulator:
        s3 = s3_client(emulator.key_file)
        # With ensure_images' `.complete` mark, which neither preflight nor Spark lists.
        upload_tree(s3, images, INPUT_URI)
        ensure_bucket(s3, OUTPUT_URI.removeprefix("s3://").split("/")[0])
        first = run_dag(run_conf)
        upload_tree(s3, added, INPUT_URI)
        second = run_dag(run_conf)
        if first.state != "success" or second.state != "success":
            print(f"a run failed: {first.task_states} {second.task_states}")
            return 1
        first_uri, second_uri = (run_output_uri(OUTPUT_URI, r.run_id) for r in (first, second))
        before, after = vectors(s3, first_uri), vectors(s3, second_uri)
        report, featurized = (
            json.loads(
                s3.get_object(
                    Bucket="bench-fruit-features", Key=second_uri.split("/", 3)[3] + name
                )["Body"].read()
            )
            for name in ("report.json", "featurize_summary.json")
        )
        timings = {
            "first": featurize_seconds(first.run_id),
            "second": featurize_seconds(second.run_id),
        }
    unchanged = all(after.get(path) == vector for path, vector in before.items())
    ratio = timings["second"]["spark_submit"] / timings["first"]["spark_submit"]
    summary = {
        "cpu": cpu_description(),
        "images": args.images,
        "added": report["incremental"]["new"],
        "incremental": report["incremental"],
        # How the reused vectors reached the second run: part files copied, rows rewritten.
        "reuse": featurized["reuse"],
        "featurize_seconds": timings,
        "ratio_spark_submit": round(ratio, 3),
        "ratio_step_wall": round(timings["second"]["step_wall"] / timings["first"]["step_wall"], 3),
        "target_ratio": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO and unchanged,
        "reused_vectors_bit_equal": unchanged,
        "features": {"first": len(before), "second": len(after)},
        "total_seconds": round(time.monotonic() - started, 1),
    }
    out = REPO_ROOT / "bench" / "results" / f"incremental_{args.images}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if unchanged else 1  # a missed speed target is reported; wrong vectors fail


if __name__ == "__main__":
    raise SystemExit(main())
