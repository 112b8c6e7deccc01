"""Featurize at scale: an incremental run over a large manifest with a few new images.

    .venv/bin/python -m bench.scale_featurize --images 100000 1000000 --new-fraction 0.01

For each size N, in a scratch folder (default out/scale, never committed):

- a manifest of N rows written with `ManifestWriter` (source "folder"), as the DAG's preflight
  publishes it (`<run>/manifest.parquet` + manifest.json): (1 - f)·N "reused" rows whose files
  do not exist on disk, and f·N new images, real JPEGs with their size and MD5 (the ETag of a
  local file). Featurize never reads a reused image, so the reused files need not exist; had it
  tried, each would be a reject ("gone"), and the bench checks there is none;
- a base run of the (1 - f)·N reused rows, written with the features' real schema (path,
  label, features array<float>[1280], size, etag, precision) by this bench, not by featurizing them:
  random float32 vectors, `--rows-per-file` rows per part file (default 10,000, about 50 MB of
  parquet each; see PART FILES below), an empty rejects dataset and a featurize_summary.json
  whose `featurizer` key is the one the job computes (taken from a real run with the same
  weights, runtime and precision) and whose `features` is the row count;
- then the job as the DAG's step runs it: `spark-submit jobs/featurize.py --output <run>
  --base <base> --weights random --model-cache <cache>`, with the spark-submit options of
  `make bench` (localdev.local_spark.spark_submit_command: local[*], C1-only JIT).

Measured per size: wall seconds; the peak resident memory of the JVM driver (local[*]: the
executors run in the same JVM, so this bounds an EMR driver from above) and of the Python
driver, from VmHWM, and of the whole process tree (Python workers included); the images the
workers read (the summary's images per precision: must be f·N); part files copied and rows
written again (the summary's `reuse`).

The model of the wall time: fixed cost + f·N / steady rate + bytes copied / copy speed. The
fixed cost and the steady rate come from two full runs of the new images alone in the same
bench (200 images, and the largest size's f·N); the copy speed from copying a sample of the
base's part files with shutil (the page cache holds them, as it holds them for the job).

Targets (issue 29): JVM driver peak at most 2 GiB and within 1.2x from the smallest size to the
largest; images read = f·N; wall at most 2x the model. Exit 1 if one is missed.

PART FILES. A full featurize run writes one part file per task, about 128 images
(DEFAULT_FILES_PER_TASK): 7,734 files of about 650 KB for 990,000 images. That is what a base
made by one full run would hold; a bench base of that many small files mostly measures the
local file system's per-file cost, so the default here is 10,000 rows a file (99 files at 1M);
`--rows-per-file 128` measures featurize's own layout (docs/SCALE.md discusses both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from bench.run_bench import PeakMemory, cpu_description
from localdev.local_spark import (
    REPO_ROOT,
    local_driver_java_options,
    local_spark_env,
    spark_submit_command,
)
from localdev.sample_data import generate_images

sys.path.insert(0, str(REPO_ROOT / "jobs"))  # imagefeatures: the manifest's writer and format
from imagefeatures.contract import (  # noqa: E402
    FEATURE_SIZE,
    FEATURES,
    FEATURIZE_SUMMARY,
    MANIFEST,
    MANIFEST_SUMMARY,
    REJECTS,
)
from imagefeatures.image_reads import file_etag  # noqa: E402
from imagefeatures.manifest import FROM_FOLDER, ManifestSummary, ManifestWriter  # noqa: E402

JOB = REPO_ROOT / "jobs" / "featurize.py"
LABELS = 131  # the reused images' folders: as many as Fruits-360's training set has
SMALL_N = 200  # the small full run: the fixed cost
MAX_DRIVER_GIB, MAX_DRIVER_RATIO, MAX_WALL_RATIO = 2.0, 1.2, 2.0
BYTES_PER_ROW = FEATURE_SIZE * 4 + 200  # a vector of random floats does not compress
COPY_SAMPLE_BYTES = 1 << 30
FEATURES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("features", pa.list_(pa.float32())),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("precision", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema([("path", pa.string()), ("label", pa.string()), ("error", pa.string())])
START = datetime(2024, 1, 1, tzinfo=UTC)


# --- the inputs ---------------------------------------------------------------------------


def new_images(root: Path, count: int) -> list[tuple[str, str, int, str]]:
    """(path URI, key, size, MD5) of `count` generated JPEGs under `root`, made once: a later
    bench that needs no more reuses them (their rows are kept in `root`/rows.json)."""
    listing = root / "rows.json"
    if listing.exists():
        rows = [tuple(row) for row in json.loads(listing.read_text())]
        if len(rows) >= count:
            return rows[:count]
    shutil.rmtree(root, ignore_errors=True)
    rows = [
        (
            f"file:{path}",
            path.relative_to(root).as_posix(),
            path.stat().st_size,
            file_etag(str(path)),
        )
        for path in generate_images(root, count, seed=7)
    ]
    listing.write_text(json.dumps(rows))
    return rows


def reused_rows(root: Path, count: int):
    """(path URI, key, size, etag) of `count` images that are not on disk, in path order."""
    for label in range(LABELS):
        for number in range(label, count, LABELS):
            key = f"label_{label:03d}/IMG_{number:08d}.jpg"
            yield f"file:{root / key}", key, 4_000 + number % 60_000, f"{number:032x}"


def write_manifest(
    folder: Path, root: Path, new: list[tuple[str, str, int, str]], reused: int
) -> ManifestSummary:
    """<folder>/manifest.parquet + manifest.json, as the DAG's preflight publishes them."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = ManifestSummary(input_uri=root.as_uri(), source=FROM_FOLDER)
    with ManifestWriter(folder / MANIFEST, summary) as writer:
        for index, (path, key, size, etag) in enumerate(new):
            writer.add(path, key, size, etag, START + timedelta(days=7, seconds=index))
        for index, (path, key, size, etag) in enumerate(reused_rows(root, reused)):
            writer.add(path, key, size, etag, START + timedelta(seconds=index))
    (folder / MANIFEST_SUMMARY).write_text(summary.as_json())
    return summary


def write_base(base: Path, root: Path, rows: int, rows_per_file: int, featurizer: str) -> int:
    """A base run of the `rows` reused images, with the real schema; returns its part files."""
    shutil.rmtree(base, ignore_errors=True)
    features = base / FEATURES
    features.mkdir(parents=True)
    rng = np.random.default_rng(29)
    job = uuid.uuid4()
    batch: dict[str, list] = {"path": [], "label": [], "size": [], "etag": []}
    files = 0

    def flush() -> None:
        nonlocal batch, files
        count = len(batch["path"])
        if not count:
            return
        values = pa.array(rng.random(count * FEATURE_SIZE, dtype=np.float32))
        offsets = pa.array(np.arange(0, (count + 1) * FEATURE_SIZE, FEATURE_SIZE, dtype=np.int32))
        vectors = pa.ListArray.from_arrays(offsets, values, type=FEATURES_SCHEMA.field(2).type)
        table = pa.table(
            [
                batch["path"],
                batch["label"],
                vectors,
                batch["size"],
                batch["etag"],
                pa.array(["f32"] * count),  # what the bench's runs ask for
            ],  # fmt: skip
            schema=FEATURES_SCHEMA,
        )
        # Spark's own names and compression (snappy), as a featurize run writes them.
        name = f"part-{files:05d}-{job}-c000.snappy.parquet"
        pq.write_table(table, features / name, compression="snappy")
        files += 1
        batch = {"path": [], "label": [], "size": [], "etag": []}

    for path, key, size, etag in reused_rows(root, rows):
        batch["path"].append(path)
        batch["label"].append(key.split("/")[0])
        batch["size"].append(size)
        batch["etag"].append(etag)
        if len(batch["path"]) >= rows_per_file:
            flush()
    flush()
    (features / "_SUCCESS").write_text("")
    (base / REJECTS).mkdir()
    pq.write_table(REJECTS_SCHEMA.empty_table(), base / REJECTS / "part-00000-empty.snappy.parquet")
    (base / REJECTS / "_SUCCESS").write_text("")
    summary = {"featurizer": featurizer, "features": rows, "rejects": 0, "listed": rows}
    (base / FEATURIZE_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return files


# --- running the job ----------------------------------------------------------------------


def _hwm_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Peaks(PeakMemory):
    """Polls a process tree: the JVM's and the Python driver's VmHWM, the tree's RSS (peak)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.jvm = self.python_driver = 0
        # (pid, name) -> "jvm", "driver", "fork" or "other" (spark-submit's shell execs java)
        self._kinds: dict[tuple[int, str], str] = {}
        super().__init__(pid, interval)

    def _kind(self, proc: psutil.Process) -> str:
        name = proc.name()
        kind = self._kinds.get((proc.pid, name))
        if kind is None:
            if name == "java":
                kind = "jvm"
            elif str(JOB) in " ".join(proc.cmdline()):
                # The driver is java's child; a process forked from it (the model's export
                # ahead of Spark, on a cache miss) has the same command line.
                parent = proc.parent()
                kind = "driver" if parent is not None and parent.name() == "java" else "fork"
            else:
                kind = "other"
            self._kinds[proc.pid, name] = kind
        return kind

    def observe(self, proc: psutil.Process) -> None:
        kind = self._kind(proc)
        if kind == "jvm":
            self.jvm = max(self.jvm, _hwm_bytes(proc.pid))
        elif kind == "driver":
            self.python_driver = max(self.python_driver, _hwm_bytes(proc.pid))


# --driver-memory for every run (None: the JVM's default, a quarter of the machine's memory).
# In local mode one JVM is driver and executors, and its RSS with a large default heap follows
# the garbage collector's pace rather than what the job needs: a capped heap that the largest
# run completes in shows that the job's need is flat.
DRIVER_MEMORY: str | None = None


_GC_PAUSE = re.compile(r"Pause .* (\d+)M->(\d+)M\((\d+)M\)")


def heap_after_gc_mib(gc_log: Path) -> float:
    """The JVM's largest heap occupancy right after a collection (G1's unified gc log): what
    the driver (and in local mode the executors) kept alive, where RSS also holds garbage
    not yet collected, which a larger heap lets grow."""
    after = (
        [int(m.group(2)) for m in _GC_PAUSE.finditer(gc_log.read_text())] if gc_log.exists() else []
    )
    return float(max(after, default=0))


def featurize(name: str, run: Path, cache: Path, base: Path | None = None) -> dict[str, Any]:
    """spark-submit jobs/featurize.py on the manifest in `run`: seconds, peaks, its summary."""
    args = ["--output", str(run), "--weights", "random", "--model-cache", str(cache)]
    if base is not None:
        args += ["--base", str(base)]
    print(f"--- {name}", flush=True)
    started = time.perf_counter()
    gc_log = run.parent / f"{run.name}.gc.log"
    gc_log.unlink(missing_ok=True)
    java_options = f"{local_driver_java_options()} -Xlog:gc:file={gc_log}"
    command = spark_submit_command(JOB, args, java_options)
    if DRIVER_MEMORY:
        command = [command[0], "--driver-memory", DRIVER_MEMORY, *command[1:]]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=local_spark_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peaks = Peaks(process.pid)
    output = process.communicate()[0]
    peaks.stop()
    seconds = time.perf_counter() - started
    if process.returncode:
        sys.exit(f"{name} failed ({process.returncode}):\n{output[-4000:]}")
    summary = json.loads((run / FEATURIZE_SUMMARY).read_text())
    mib = 2**20
    print(
        f"    {seconds:.1f} s; JVM peak {peaks.jvm / mib:.0f} MiB, Python driver "
        f"{peaks.python_driver / mib:.0f} MiB, tree {peaks.peak / mib:.0f} MiB",
        flush=True,
    )
    return {
        "seconds": seconds,
        "jvm_heap_after_gc_mib": heap_after_gc_mib(gc_log),
        "jvm_peak_mib": peaks.jvm / mib,
        "python_driver_peak_mib": peaks.python_driver / mib,
        "tree_peak_mib": peaks.peak / mib,
        "summary": summary,
    }


def copy_speed(files: list[Path], scratch: Path) -> float:
    """Bytes/s of copying (a sample of) `files` with shutil, as the local disk does it."""
    scratch.mkdir(parents=True, exist_ok=True)
    copied, started = 0, time.perf_counter()
    for path in files:
        shutil.copyfile(path, scratch / path.name)
        copied += path.stat().st_size
        if copied >= COPY_SAMPLE_BYTES:
            break
    seconds = time.perf_counter() - started
    shutil.rmtree(scratch)
    return copied / seconds


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the bench ------------------------------------------------------------------------------


def run(sizes: list[int], fraction: float, rows_per_file: int, work: Path, keep: bool) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    images = work / "images"  # the root of every manifest: new files here, reused ones absent
    cache = work / "model-cache"
    new_counts = {n: max(1, round(n * fraction)) for n in sizes}
    largest_new = max(new_counts.values())
    free = shutil.disk_usage(work).free
    needed = sum(2 * n * BYTES_PER_ROW for n in sizes)
    print(f"scratch {work}: {free / 2**30:.0f} GiB free, about {needed / 2**30:.0f} GiB needed")
    if free < needed * 1.1:
        sys.exit("not enough disk for these sizes: try smaller --images (e.g. 100000 300000)")
    print(f"generating {largest_new} new images under {images}", flush=True)
    new = new_images(images, max(largest_new, SMALL_N))

    # Two full runs of new images alone (manifest only: no base): the first exports the model
    # into the cache (so no measured run pays it) and gives the job's featurizer key; the
    # second is the fixed cost; a third, of the largest size's new images, the steady rate.
    calibration = {}
    for name, count in (("warm", SMALL_N), ("small", SMALL_N), ("rate", largest_new)):
        folder = work / f"full_{name}"
        shutil.rmtree(folder, ignore_errors=True)
        write_manifest(folder, images, new[:count], 0)
        calibration[name] = featurize(f"full run, {count} new images ({name})", folder, cache)
        calibration[name]["images"] = count
        shutil.rmtree(folder)
    featurizer = calibration["warm"]["summary"]["featurizer"]
    small, big = calibration["small"], calibration["rate"]
    rate = (big["images"] - SMALL_N) / (big["seconds"] - small["seconds"])
    fixed = small["seconds"] - SMALL_N / rate
    print(f"steady rate {rate:.1f} images/s, fixed cost {fixed:.1f} s", flush=True)

    results = []
    for n in sizes:
        count = new_counts[n]
        reused = n - count
        base = work / f"base_{n}"
        # The schema's columns in the name: a base an older bench wrote is written again.
        marker = base / f".complete_{len(FEATURES_SCHEMA)}_{reused}_{rows_per_file}"
        started = time.perf_counter()
        if marker.exists():
            files = len(list((base / FEATURES).glob("part-*.parquet")))
            summary_path = base / FEATURIZE_SUMMARY
            summary = json.loads(summary_path.read_text())
            summary["featurizer"] = featurizer
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        else:
            print(f"writing the base run of {reused:,} vectors under {base}", flush=True)
            files = write_base(base, images, reused, rows_per_file, featurizer)
            marker.write_text("ok")
        base_build = time.perf_counter() - started
        part_files = sorted((base / FEATURES).glob("part-*.parquet"))
        base_bytes = sum(p.stat().st_size for p in part_files)
        run_folder = work / f"run_{n}"
        shutil.rmtree(run_folder, ignore_errors=True)
        write_manifest(run_folder, images, new[:count], reused)
        speed = copy_speed(part_files, work / "copy_probe")
        load = loadavg()
        measured = featurize(
            f"incremental run: {n:,} rows, {count:,} new, base of {files} part files",
            run_folder,
            cache,
            base,
        )
        summary = measured["summary"]
        read = sum((summary.get("images_per_precision") or {}).values())
        incremental, reuse = summary["incremental"], summary["reuse"] or {}
        copied_bytes = sum(
            p.stat().st_size for p in (run_folder / FEATURES).glob("part-*.parquet")
            if (base / FEATURES / p.name).exists()
        )  # fmt: skip
        model = fixed + count / rate + copied_bytes / speed
        checks = {
            "images read = new": read == count and incremental.get("new") == count,
            "reused = base rows": incremental.get("reused") == reused,
            "features + rejects = manifest": summary["features"] == n and summary["rejects"] == 0,
            "every base part file copied": reuse.get("files_copied") == files,
        }
        results.append(
            {
                "rows": n,
                "new": count,
                "reused": reused,
                "base_part_files": files,
                "base_gib": base_bytes / 2**30,
                "base_build_s": base_build,
                "loadavg_before": load,
                "seconds": measured["seconds"],
                "job_seconds": summary["seconds"],
                "model_from_cache": (summary.get("model_cache") or {}).get("hit"),
                "jvm_peak_mib": measured["jvm_peak_mib"],
                "jvm_heap_after_gc_mib": measured["jvm_heap_after_gc_mib"],
                "python_driver_peak_mib": measured["python_driver_peak_mib"],
                "tree_peak_mib": measured["tree_peak_mib"],
                "images_read": read,
                "s3_gets": summary["s3_gets"],
                "files_copied": reuse.get("files_copied"),
                "rows_rewritten": reuse.get("rows_rewritten"),
                "copied_gib": copied_bytes / 2**30,
                "copy_mib_s": speed / 2**20,
                "model_s": model,
                "model_parts_s": {
                    "fixed": fixed,
                    "new images": count / rate,
                    "copy": copied_bytes / speed,
                },
                "wall_over_model": measured["seconds"] / model,
                "checks": checks,
            }
        )
        if not keep:
            shutil.rmtree(run_folder)
    return {
        "cpu": cpu_description(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "new_fraction": fraction,
        "rows_per_file": rows_per_file,
        "calibration": {
            name: {k: v for k, v in stage.items() if k != "summary"}
            for name, stage in calibration.items()
        },
        "steady_rate_images_s": rate,
        "fixed_cost_s": fixed,
        "sizes": results,
    }


def report(result: dict) -> bool:
    """Print the tables; True when every target is met."""
    cpu = result["cpu"]
    print(f"\nCPU: {cpu['model']} ({result['cpus']} CPUs, {result['memory_gib']} GiB); kernel")
    print(f"flags: {' '.join(cpu['flags'])}")
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in lscpu.splitlines():
        if line.startswith(("Model name", "CPU(s):", "L3 cache")):
            print(f"lscpu  {line}")
    cal = result["calibration"]
    print(
        f"\nCalibration (full runs of new images alone, model cached): {SMALL_N} images "
        f"{cal['small']['seconds']:.1f} s, {cal['rate']['images']:,} images "
        f"{cal['rate']['seconds']:.1f} s: steady rate {result['steady_rate_images_s']:.1f} "
        f"images/s, fixed cost {result['fixed_cost_s']:.1f} s. Base part files of "
        f"{result['rows_per_file']:,} rows.\n"
    )
    head = [
        "manifest rows", "new (read)", "reused", "base part files", "base GiB", "wall s",
        "JVM driver peak MiB", "JVM heap after GC, max MiB", "Python driver peak MiB",
        "process tree peak MiB",
        "images read", "part files copied", "rows rewritten", "model s (fixed + new + copy)",
        "wall / model",
    ]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for r in result["sizes"]:
        parts = r["model_parts_s"]
        cells = [
            f"{r['rows']:,}",
            f"{r['new']:,}",
            f"{r['reused']:,}",
            f"{r['base_part_files']:,}",
            f"{r['base_gib']:.2f}",
            f"{r['seconds']:.1f}",
            f"{r['jvm_peak_mib']:.0f}",
            f"{r['jvm_heap_after_gc_mib']:.0f}",
            f"{r['python_driver_peak_mib']:.0f}",
            f"{r['tree_peak_mib']:.0f}",
            f"{r['images_read']:,}",
            f"{r['files_copied']:,}",
            f"{r['rows_rewritten']:,}",
            f"{r['model_s']:.1f} ({parts['fixed']:.1f} + {parts['new images']:.1f} + "
            f"{parts['copy']:.1f})",
            f"{r['wall_over_model']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nReused rows name files that do not exist on disk: featurize never reads a reused "
        "image (on S3: GETs only for the new ones). Copy speed (shutil, page cache warm): "
        + ", ".join(f"{r['copy_mib_s']:.0f} MiB/s at {r['rows']:,}" for r in result["sizes"])
        + ". Load average before each run: "
        + ", ".join(f"[{r['loadavg_before']}] at {r['rows']:,}" for r in result["sizes"])
    )
    first, last = result["sizes"][0], result["sizes"][-1]
    ratio = last["jvm_peak_mib"] / first["jvm_peak_mib"]
    live = last["jvm_heap_after_gc_mib"] / max(first["jvm_heap_after_gc_mib"], 1.0)
    targets = {
        f"JVM driver peak <= {MAX_DRIVER_GIB:.0f} GiB at every size": all(
            r["jvm_peak_mib"] <= MAX_DRIVER_GIB * 1024 for r in result["sizes"]
        ),
        f"JVM driver peak RSS {last['rows']:,} / {first['rows']:,} = {ratio:.2f} "
        f"(<= {MAX_DRIVER_RATIO})": ratio <= MAX_DRIVER_RATIO,
        f"JVM heap after GC {last['rows']:,} / {first['rows']:,} = {live:.2f} "
        f"(<= {MAX_DRIVER_RATIO})": live <= MAX_DRIVER_RATIO,
        "images read = new images, features + rejects = manifest, base files copied": all(
            all(r["checks"].values()) for r in result["sizes"]
        ),
        f"wall <= {MAX_WALL_RATIO:.0f}x the model at every size": all(
            r["wall_over_model"] <= MAX_WALL_RATIO for r in result["sizes"]
        ),
    }
    print()
    for name, met in targets.items():
        print(f"- {name}: {'met' if met else 'MISSED'}")
    for r in result["sizes"]:
        failed = [name for name, ok in r["checks"].items() if not ok]
        if failed:
            print(f"  at {r['rows']:,}: failed {', '.join(failed)}")
    return all(targets.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--new-fraction", type=float, default=0.01)
    parser.add_argument("--rows-per-file", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "out" / "scale")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep each run's output folder")
    parser.add_argument(
        "--driver-memory",
        default=None,
        help="spark-submit --driver-memory for every run (default: the JVM's own default)",
    )
    args = parser.parse_args(argv)
    global DRIVER_MEMORY
    DRIVER_MEMORY = args.driver_memory
    result = run(sorted(args.images), args.new_fraction, args.rows_per_file, args.work, args.keep)
    met = report(result)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"scale_featurize_{'_'.join(str(n) for n in sorted(args.images))}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
