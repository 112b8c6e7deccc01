"""Preflight's listing and manifest at scale: the real code, S3's pages served from memory.

    .venv/bin/python -m bench.scale_listing --keys 100000 1000000

Each size runs in a fresh subprocess (its own peak RSS). ListObjectsV2 pages come from a
botocore Stubber that makes each page when the paginator asks for it, so neither the bench nor
moto holds the listing (moto sorts every key for every page: at 100,000 keys it measures
itself). Reported per size: LIST requests, wall seconds, the stub's own seconds (making and
validating the pages: S3's side; a real answer costs botocore an XML parse instead), our
seconds per 1,000 keys (wall minus the stub's), peak RSS, and with --heap the Python heap's
peak (tracemalloc, in a second run: it slows Python several times). Targets (issue 29): peak
RSS at most 512 MiB at the largest size and within 1.2x of the smallest size's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUCKET, PREFIX = "catalogue", "fruits/"
LABELS = 131  # as many folders as the Fruits-360 training set has
PAGE = 1_000  # S3's most keys per ListObjectsV2 answer
MAX_RSS_MIB, MAX_RATIO = 512, 1.2


def page_server(client: Any, keys: int) -> Any:
    """A Stubber that answers each ListObjectsV2 call with the next page of `keys` keys,
    made when asked (one page in memory at a time); `.seconds` is its own time."""
    from botocore.stub import Stubber

    start_time = datetime(2024, 1, 1, tzinfo=UTC)

    class PageServer(Stubber):
        seconds = 0.0

        def _assert_expected_params(self, model: Any, params: dict, context: Any, **kw: Any):
            if not self._queue and model.name == "ListObjectsV2":
                started = time.perf_counter()
                self.add_response("list_objects_v2", self._page(params))
                self.seconds += time.perf_counter() - started
            return super()._assert_expected_params(model, params, context, **kw)

        def _page(self, params: dict) -> dict:
            first = int(params.get("ContinuationToken", "0"))
            last = min(first + params.get("MaxKeys", PAGE), keys)
            contents = []
            for number in range(first, last):
                # One object in a hundred is not an image (notes, sidecars), as in a real bucket.
                name = f"IMG_{number:08d}.jpg" if number % 100 else f"notes_{number:08d}.txt"
                contents.append(
                    {
                        "Key": f"{PREFIX}label_{number % LABELS:03d}/{name}",
                        "Size": 4_000 + number % 60_000,
                        "ETag": f'"{number:032x}"',
                        "LastModified": start_time + timedelta(seconds=number),
                        "StorageClass": "STANDARD",
                    }
                )
            page = {
                "Name": BUCKET,
                "Prefix": params.get("Prefix", ""),
                "MaxKeys": PAGE,
                "KeyCount": len(contents),
                "IsTruncated": last < keys,
                "Contents": contents,
            }
            if last < keys:
                page["NextContinuationToken"] = str(last)
            return page

    return PageServer(client)


def measure(keys: int, heap: bool) -> dict[str, Any]:
    """One size, in this process: build the manifest as preflight does, then discard it."""
    sys.path.insert(0, str(REPO / "dags"))
    import boto3
    import pyarrow.parquet as pq

    from emr_pipeline.listing import build_manifest

    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    server = page_server(client, keys)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if heap:
        import tracemalloc

        tracemalloc.start()
    with server:
        started = time.perf_counter()
        manifest = build_manifest(client, f"s3://{BUCKET}/{PREFIX}")
        wall = time.perf_counter() - started
    result = {
        "keys": keys,
        "images": manifest.images,
        "labels": len(manifest.labels),
        "list_requests": manifest.summary.list_requests,
        "wall_s": wall,
        "stub_s": server.seconds,
        "rss_before_mib": rss_before / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**20,
        "manifest_mib": manifest.local_path.stat().st_size / 2**20,
        "row_groups": pq.ParquetFile(manifest.local_path).metadata.num_row_groups,
    }
    if heap:
        result["heap_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    manifest.discard()
    return result


def run_child(keys: int, heap: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.scale_listing", "--child", str(keys)]
    if heap:
        command.append("--heap")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{keys} keys failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(results: list[dict[str, Any]]) -> str:
    heap = "heap_peak_mib" in results[0]
    head = [
        "keys",
        "images",
        "LIST calls",
        "wall s",
        "stub S3 s",
        "ours ms / 1k keys",
        "stub ms / 1k keys",
        "RSS after imports MiB",
        "peak RSS MiB",
        *(["Python heap peak MiB"] if heap else []),
        "manifest MiB",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in results:
        per_1k = 1000 / r["keys"]
        cells = [
            f"{r['keys']:,}",
            f"{r['images']:,}",
            f"{r['list_requests']:,}",
            f"{r['wall_s']:.1f}",
            f"{r['stub_s']:.1f}",
            f"{(r['wall_s'] - r['stub_s']) * 1000 * per_1k:.1f}",
            f"{r['stub_s'] * 1000 * per_1k:.1f}",
            f"{r['rss_before_mib']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
            *([f"{r['heap_peak_mib']:.0f}"] if heap else []),
            f"{r['manifest_mib']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--heap", action="store_true", help="also the Python heap's peak")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, heap=args.heap)))
        return 0
    results = [run_child(keys, heap=False) for keys in args.keys]
    if args.heap:
        for result in results:
            result["heap_peak_mib"] = run_child(result["keys"], heap=True)["heap_peak_mib"]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} CPUs), Python {platform.python_version()}\n")
    print(table(results))
    smallest, largest = results[0], results[-1]
    ratio = largest["peak_rss_mib"] / smallest["peak_rss_mib"]
    passed = largest["peak_rss_mib"] <= MAX_RSS_MIB and ratio <= MAX_RATIO
    print(
        f"\npeak RSS {largest['peak_rss_mib']:.0f} MiB at {largest['keys']:,} keys (target "
        f"<= {MAX_RSS_MIB}), {ratio:.2f}x the {smallest['keys']:,}-key figure (target <= "
        f"{MAX_RATIO}): {'met' if passed else 'MISSED'}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
