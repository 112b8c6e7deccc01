"""`make bench`: the notebook's method, our jobs and the limit, timed in one run.

Every stage runs as its own process (spark-submit, or plain Python for the limit) and is
timed as a whole, with the peak resident memory of its whole process tree (JVM and Python
workers included). Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from localdev.local_spark import (
    QUIET_LOGGING_JAVA_OPTIONS,
    REPO_ROOT,
    local_spark_env,
    spark_submit_command,
)
from localdev.sample_data import generate_images

BENCH_DIR = REPO_ROOT / "bench"
sys.path.insert(0, str(REPO_ROOT / "jobs"))  # imagefeatures, for the shared weights file
SMALL_N = 200  # the small run that measures our fixed start-up cost
# The notebook's stages run on Spark's default JVM (C1 and C2), as the notebook did; our jobs
# on the local default (C1 only), which would slow its pure-Java SVD.
NOTEBOOK_JAVA_OPTIONS = QUIET_LOGGING_JAVA_OPTIONS


def notebook_env(onednn: str | None = None) -> dict[str, str]:
    """Environment for the notebook's stages: TensorFlow's own oneDNN choice for this CPU, as
    the notebook ran, or the switch set to `onednn` (our job turns it on where TF does not)."""
    from imagefeatures.model import ONEDNN_SWITCH

    env = {name: value for name, value in os.environ.items() if name != ONEDNN_SWITCH}
    if onednn is not None:
        env[ONEDNN_SWITCH] = onednn
    return env


class PeakMemory:
    """Samples the resident memory of a process and all its children until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(self.interval):
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed(name: str, command: list[str], env: Mapping[str, str] | None = None) -> dict:
    """Run `command` (in `env`, default ours); wall seconds, peak memory (MiB), and its last
    JSON line if any."""
    print(f"--- {name}: {' '.join(command[-8:])}", flush=True)
    started = time.time()
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=local_spark_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = PeakMemory(process.pid)
    output = process.communicate()[0]
    peak = sampler.stop()
    seconds = time.time() - started
    if process.returncode != 0:
        sys.exit(f"{name} failed ({process.returncode}):\n{output[-3000:]}")
    result = {"seconds": round(seconds, 2), "peak_mib": round(peak / 2**20)}
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            result["detail"] = json.loads(line)
            break
    print(f"    {seconds:.1f}s, peak {result['peak_mib']} MiB", flush=True)
    return result


def ensure_images(root: Path, count: int) -> Path:
    folder = root / f"images_{count}"
    if not (folder / ".complete").exists():
        generate_images(folder, count, seed=1)
        (folder / ".complete").write_text("ok")
    return folder


def run(count: int, memory_count: int, work: Path) -> dict:
    from imagefeatures.model import save_random_weights

    work.mkdir(parents=True, exist_ok=True)
    weights = work / "bench_random.weights.h5"
    if not weights.exists():
        save_random_weights(str(weights))
    images = ensure_images(work, count)
    small = ensure_images(work, SMALL_N)
    out = work / "out"
    jobs = REPO_ROOT / "jobs"

    def notebook_featurize(output: str) -> list[str]:
        return spark_submit_command(
            BENCH_DIR / "notebook_jobs.py",
            ["featurize", "--input", str(images), "--output", str(out / output)]
            + ["--weights", str(weights)],
            NOTEBOOK_JAVA_OPTIONS,
        )

    stages = {
        "notebook featurize": timed(
            "notebook featurize", notebook_featurize("nb_features"), notebook_env()
        ),
        # For reference: how much of our gain TensorFlow's oneDNN switch alone would give it.
        "notebook featurize (oneDNN on)": timed(
            "notebook featurize, oneDNN on",
            notebook_featurize("nb_features_onednn"),
            notebook_env(onednn="1"),
        ),
        "notebook pca": timed(
            "notebook pca",
            spark_submit_command(
                BENCH_DIR / "notebook_jobs.py",
                ["pca", "--input", str(out / "nb_features"), "--output", str(out / "nb_pca")],
                NOTEBOOK_JAVA_OPTIONS,
            ),
            notebook_env(),
        ),
        "ours featurize": timed(
            "ours featurize",
            spark_submit_command(
                jobs / "featurize.py",
                ["--input", str(images), "--output", str(out / "ours"), "--weights", str(weights)],
            ),
        ),
        "ours pca": timed(
            "ours pca",
            spark_submit_command(
                jobs / "pca.py",
                ["--input", str(out / "ours" / "features"), "--output", str(out / "ours")],
            ),
        ),
        "ours featurize (small)": timed(
            "ours featurize, small",
            spark_submit_command(
                jobs / "featurize.py",
                [
                    "--input",
                    str(small),
                    "--output",
                    str(out / "ours_small"),
                    "--weights",
                    str(weights),
                ],
            ),
        ),
        "limit": timed(
            "limit",
            [
                sys.executable,
                str(BENCH_DIR / "limit.py"),
                "--input",
                str(images),
                "--weights",
                str(weights),
            ],
        ),
    }
    if memory_count:
        big = ensure_images(work, memory_count)
        stages[f"ours featurize ({memory_count})"] = timed(
            f"ours featurize, {memory_count} images",
            spark_submit_command(
                jobs / "featurize.py",
                ["--input", str(big), "--output", str(out / "ours_big"), "--weights", str(weights)],
            ),
        )
    return stages


def summarize(stages: dict, count: int, memory_count: int) -> dict:
    nb_f, nb_p = stages["notebook featurize"], stages["notebook pca"]
    ours_f, ours_p = stages["ours featurize"], stages["ours pca"]
    small, limit = stages["ours featurize (small)"], stages["limit"]
    limit_rate = count / limit["detail"]["work_seconds"]
    # Steady state: the marginal rate between the small and the full run.
    ours_rate = (count - SMALL_N) / (ours_f["seconds"] - small["seconds"])
    summary = {
        "images": count,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30)} GiB",
        "stages": stages,
        "ratios": {
            "featurize ours/notebook (target <= 0.65)": round(
                ours_f["seconds"] / nb_f["seconds"], 3
            ),
            "featurize steady-state images/s ours/limit (target >= 0.9)": round(
                ours_rate / limit_rate, 3
            ),
            "pca ours/notebook (target <= 0.5)": round(ours_p["seconds"] / nb_p["seconds"], 3),
            "featurize ours/notebook with oneDNN on (reference, no target)": round(
                ours_f["seconds"] / stages["notebook featurize (oneDNN on)"]["seconds"], 3
            ),
        },
        "rates_images_per_s": {
            "notebook featurize (whole process)": round(count / nb_f["seconds"], 1),
            "ours featurize (whole process)": round(count / ours_f["seconds"], 1),
            "ours featurize (steady state)": round(ours_rate, 1),
            "limit (decode + inference)": round(limit_rate, 1),
        },
    }
    if memory_count:
        big = stages[f"ours featurize ({memory_count})"]
        summary["ratios"][f"featurize peak memory {memory_count}/{count} (target ~1)"] = round(
            big["peak_mib"] / ours_f["peak_mib"], 3
        )
    return summary


def print_table(summary: dict) -> None:
    print(f"\n{summary['images']} images on {summary['machine']}\n")
    print(f"{'stage':<32}{'wall s':>9}{'images/s':>10}{'peak MiB':>10}")
    for name, stage in summary["stages"].items():
        count = summary["images"]
        if "small" in name:
            count = SMALL_N
        elif "(" in name and name.split("(")[1].rstrip(")").isdigit():
            count = int(name.split("(")[1].rstrip(")"))
        rate = f"{count / stage['seconds']:.1f}" if "pca" not in name else ""
        print(f"{name:<32}{stage['seconds']:>9.1f}{rate:>10}{stage['peak_mib']:>10}")
    detail = summary["stages"]["limit"]["detail"]
    print(f"{'  limit: model build':<32}{detail['build_seconds']:>9.1f}")
    print(f"{'  limit: decode + inference':<32}{detail['work_seconds']:>9.1f}")
    print()
    for name, value in {**summary["rates_images_per_s"], **summary["ratios"]}.items():
        print(f"{name:<62}{value:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument(
        "--memory-images",
        type=int,
        default=20000,
        help="also run our featurize on this many images (0: skip)",
    )
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench" / "work")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    stages = run(args.images, args.memory_images, args.work)
    summary = summarize(stages, args.images, args.memory_images)
    print_table(summary)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"bench_{args.images}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
