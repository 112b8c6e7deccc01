"""What every job entrypoint does: parse arguments, get Spark, run, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from pyspark.sql import SparkSession

from imagefeatures.errors import CheckFailedError, JobInputError
from imagefeatures.progress import DEFAULT_PROGRESS_SECONDS, JobProgress
from imagefeatures.session import get_spark

# A job's frozen config, as its parse_args builds it (FeaturizeConfig, PcaConfig...).
Config = TypeVar("Config")


def run_job(
    app_name: str,
    parse_args: Callable[[list[str]], Config],
    job: Callable[[SparkSession, Config, JobProgress], dict],
    argv: list[str] | None = None,
    before_spark: Callable[[Config], None] | None = None,
) -> int:
    """Run `job`; 0 on success, 2 for bad input (nothing written), 1 for failed checks.
    `before_spark` starts work that needs no Spark, to overlap Spark's start-up. While `job`
    runs, its progress is published to --progress (when the config has it and it is given)."""
    config = parse_args(sys.argv[1:] if argv is None else argv)
    if before_spark is not None:
        before_spark(config)
    spark = get_spark(app_name)
    uri = getattr(config, "progress", None)
    seconds = getattr(config, "progress_seconds", DEFAULT_PROGRESS_SECONDS)
    progress = JobProgress(spark, uri, app_name, seconds)
    try:
        with progress:
            result = job(spark, config, progress)
    except (JobInputError, CheckFailedError) as exc:
        print(f"{app_name}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    brief = {k: v for k, v in result.items() if isinstance(v, (str, int, float))}
    print(f"{app_name}: done: {brief}", flush=True)
    return 0
