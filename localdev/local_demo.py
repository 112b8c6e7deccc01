"""`make jobs-demo`: sample images -> featurize -> pca -> validate with local Spark, no Airflow,
then a summary. (`make demo` runs the whole DAG on the emulator: localdev/dag_demo.py.)

The same jobs the EMR steps run, submitted with `spark-submit` exactly as a user would.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from localdev.local_spark import REPO_ROOT, spark_submit
from localdev.sample_data import generate_images

# Two files no decoder accepts, so the demo shows where rejects go.
BAD_FILES = {
    "Banana/r_broken_100.jpg": b"\xff\xd8\xff\xe0 truncated jpeg",
    "Kiwi/empty.jpg": b"",
}


def prepare_images(root: Path, count: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    generate_images(root, count, seed=0)
    for relative, content in BAD_FILES.items():
        (root / relative).write_bytes(content)


def run_step(job: str, args: list[str]) -> float:
    print(f"\n=== {job}: spark-submit jobs/{job}.py {' '.join(args)}", flush=True)
    started = time.time()
    result = spark_submit(job, args)
    if result.returncode != 0:
        sys.exit(f"{job} failed with exit code {result.returncode}")
    return time.time() - started


def print_summary(out: Path, seconds: dict[str, float]) -> None:
    report = json.loads((out / "report.json").read_text())
    explained = ", ".join(f"{v:.3f}" for v in report["pca"]["explained_variance"])
    print("\n=== summary")
    print(f"status:    {report['status']}")
    print(
        f"images:    {report['images']}  features: {report['features']}  "
        f"rejects: {report['rejects']}"
    )
    labels = ", ".join(f"{name} ({n['features']})" for name, n in report["labels"].items())
    print(f"labels:    {labels}")
    print(f"PCA k={report['pca']['k']}, explained variance: {explained}")
    for row in report["rejected_files"]:
        print(f"rejected:  {row['path']}: {row['error']}")
    print("seconds:   " + ", ".join(f"{job} {s:.1f}" for job, s in seconds.items()))
    print(f"\noutputs under {out}/: features/ rejects/ pca/ pca_model/ report.json pca.png")
    print(f"plot:      {out / 'pca.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--weights", default="random", help="random: no download needed")
    args = parser.parse_args(argv)
    out = (REPO_ROOT / args.out).resolve()
    images = out / "images"
    results = out / "run"
    prepare_images(images, args.images)
    print(f"generated {args.images} sample images (+{len(BAD_FILES)} bad files) under {images}")
    seconds = {
        "featurize": run_step(
            "featurize",
            ["--input", str(images), "--output", str(results), "--weights", args.weights],
        ),
        "pca": run_step("pca", ["--input", str(results / "features"), "--output", str(results)]),
        "validate": run_step("validate", ["--output", str(results)]),
    }
    print_summary(results, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
