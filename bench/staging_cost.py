"""What the emulator's staging costs per 1000 objects: `python -m bench.staging_cost [N]`.

Uploads N small image-sized objects to an in-process emulator, then times what a step pays
before and after its command: staging (list + download each object once) and the sync back
when the step changed nothing (list the local copy, hash each file, upload nothing). Prints the
CPU's model and flags next to the numbers, as every benchmark here does.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from localdev.emr_emulator import EmrEmulator
from localdev.emr_emulator.credentials import read_key_file
from localdev.emr_emulator.staging import S3Stager


def cpu_summary() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []
    )
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
    return f"{platform.machine()} {model or '?'}, {os.cpu_count()} cores, flags: {' '.join(wanted)}"


def measure(count: int, size: int = 10_000) -> dict[str, float]:
    with EmrEmulator(port=0) as emulator, tempfile.TemporaryDirectory() as work:
        s3 = read_key_file(emulator.key_file).client("s3")
        s3.create_bucket(Bucket="staging-bench")
        body = os.urandom(size)
        for index in range(count):
            s3.put_object(
                Bucket="staging-bench", Key=f"in/Fruit{index % 10}/{index}.jpg", Body=body
            )
        stager = S3Stager(s3)
        started = time.perf_counter()
        staged = stager.stage(["s3://staging-bench/in/"], Path(work))
        staging = time.perf_counter() - started
        started = time.perf_counter()
        report = stager.sync_back(staged)
        sync = time.perf_counter() - started
        assert len(staged.downloaded) == count and not report.uploaded
    return {"stage_s": staging, "sync_back_s": sync}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 1000
    result = measure(count)
    per_1000 = {name: seconds * 1000 / count for name, seconds in result.items()}
    print(cpu_summary())
    print(
        f"{count} objects of 10 kB: staging {result['stage_s']:.2f} s, sync back "
        f"{result['sync_back_s']:.2f} s; per 1000 objects: staging {per_1000['stage_s']:.2f} s, "
        f"sync back {per_1000['sync_back_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
