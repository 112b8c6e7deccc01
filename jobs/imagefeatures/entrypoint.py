"""What every job entrypoint does: parse arguments, get Spark, run, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pyspark.sql import SparkSession

from imagefeatures.errors import CheckFailedError, JobInputError
from imagefeatures.progress import DEFAULT_PROGRESS_SECONDS, JobProgress
from imagefeatures.session import get_spark


def run_job(
    app_name: str,
    parse_args: Callable[[list[str]], argparse.Namespace],
    job: Callable[[SparkSession, argparse.Namespace, JobProgress], dict],
    argv: list[str] | None = None,
    before_spark: Callable[[argparse.Namespace], None] | None = None,
) -> int:
    """Run `job`; 0 on success, 2 for bad input (nothing written), 1 for failed checks.
    `before_spark` starts work that needs no Spark, to overlap Spark's start-up. While `job`
    runs, its progress is published to --progress (when the parser has it and it is given)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if before_spark is not None:
        before_spark(args)
    spark = get_spark(app_name)
    uri = getattr(args, "progress", None)
    seconds = getattr(args, "progress_seconds", DEFAULT_PROGRESS_SECONDS)
    progress = JobProgress(spark, uri, app_name, seconds)
    try:
        with progress:
            result = job(spark, args, progress)
    except (JobInputError, CheckFailedError) as exc:
        print(f"{app_name}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    brief = {k: v for k, v in result.items() if isinstance(v, (str, int, float))}
    print(f"{app_name}: done: {brief}", flush=True)
    return 0
