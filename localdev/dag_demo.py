"""`make demo`: the real DAG, end to end, on the local EMR emulator.

Generates sample images, starts the emulator (moto + a step runner that runs each Spark step
with local Spark), uploads the images to its S3, runs the DAG with `dag.test()`, prints a
summary and copies report.json and pca.png to a local folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from localdev.dag_run import (
    cluster_states,
    download,
    emulated_airflow,
    ensure_bucket,
    run_dag,
    run_output_uri,
    s3_client,
    upload_tree,
)
from localdev.local_demo import BAD_FILES
from localdev.local_spark import REPO_ROOT
from localdev.sample_data import generate_images

INPUT_URI = "s3://demo-fruit-images/fruits/"
OUTPUT_URI = "s3://demo-fruit-features/runs/"
STATE_DIR = REPO_ROOT / ".state"


def say(message: str) -> None:
    print(f"\n>>> {message}", flush=True)


def make_images(folder: Path, count: int) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    generate_images(folder, count, seed=0)
    for relative, content in BAD_FILES.items():
        (folder / relative).write_bytes(content)


def print_summary(result, report: dict, out: Path) -> None:
    # dags/ is importable once the DAG loaded
    from emr_pipeline.report import describe_incremental, describe_model

    explained = ", ".join(f"{v:.3f}" for v in report["pca"]["explained_variance"])
    labels = ", ".join(f"{name} ({n['features']})" for name, n in report["labels"].items())
    print("\n=== summary")
    print(f"run:       {result.run_id} -> {result.state}")
    print(
        f"images:    {report['images']}  features: {report['features']}  "
        f"rejects: {report['rejects']}"
    )
    print(f"labels:    {labels}")
    if model := describe_model(report):  # what ran the model, in which precision
        print(f"model:     {model}")
    if incremental := describe_incremental(report):  # which images were featurized
        print(f"features:  {incremental}")
    print(f"PCA k={report['pca']['k']}, explained variance: {explained}")
    for row in report["rejected_files"]:
        print(f"rejected:  {Path(row['path']).name} ({row['label']}): {row['error']}")
    if report.get("cost"):  # what the cluster used, recorded after the teardown
        from emr_pipeline.cost import format_cost

        print(format_cost(report["cost"]))
    print("seconds per task:")
    for task_id, seconds in result.task_seconds.items():
        print(f"  {task_id:<26} {seconds:7.1f}  {result.task_states[task_id]}")
    print(f"\nreport:    {out / 'report.json'}")
    print(f"plot:      {out / 'pca.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    out = (REPO_ROOT / args.out).resolve()
    started = time.monotonic()

    images = out / "images"
    make_images(images, args.images)
    with emulated_airflow(STATE_DIR, say) as emulator:
        s3 = s3_client(emulator.key_file)
        uploaded = upload_tree(s3, images, INPUT_URI)
        ensure_bucket(s3, OUTPUT_URI.removeprefix("s3://").split("/")[0])
        say(f"uploaded {uploaded} files ({len(BAD_FILES)} of them broken) to {INPUT_URI}")
        say("running the DAG fruit_features_emr with dag.test() against the emulator")
        result = run_dag(
            {
                "input_uri": INPUT_URI,
                "output_uri": OUTPUT_URI,
                "weights": "random",  # offline: no weights download
                "poke_interval_seconds": 1,
            }
        )
        clusters = cluster_states(emulator.key_file)
        say(f"clusters: {clusters}")
        if result.state != "success":
            print(f"the run failed: {result.task_states}", file=sys.stderr)
            return 1
        run_uri = run_output_uri(OUTPUT_URI, result.run_id)
        report_path = download(s3, run_uri + "report.json", out / "report.json")
        download(s3, run_uri + "pca.png", out / "pca.png")
    print_summary(result, json.loads(report_path.read_text()), out)
    print(f"total:     {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
