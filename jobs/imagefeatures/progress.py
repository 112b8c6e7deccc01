"""A job's progress while it runs: a small JSON file, overwritten at a steady interval.

The driver writes it from a daemon thread, through Spark's Hadoop file system (on EMR one S3
PUT per interval: 120 an hour at the default 30 s; the DAG asks for its poke interval, within
5-60 s), and at once when the phase changes. What it holds:

- `phase`: what the job is doing (listing, preparing the model, featurizing...);
- `done` / `total` in `unit`: images from the model's counters in featurize (updated as each
  task ends); otherwise the tasks of Spark's active stages (no total between stages);
- `rejects`; `rate_per_second` and `eta_seconds` (images: since the model started; tasks:
  since the phase did); `elapsed_seconds`;
- `state`: running, finished or failed; `updated_at`, and `writes`, a count that grows with
  every write even when nothing else moved, so a reader tells a hung job from a slow one;
- `spark_application_id`, the job's application in Spark's history server.

A failed write is printed and skipped: progress never fails a job.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from imagefeatures import storage

DEFAULT_PROGRESS_SECONDS = 30.0


class Count:
    """A number read as an accumulator is (`.value`)."""

    def __init__(self, value: int) -> None:
        self.value = value


class ImageCounters:
    """Images done and rejected: accumulators the model's UDF adds to (`live`), or the final
    counts once the outputs are written (`settled`)."""

    def __init__(self, images: Any, rejects: Any) -> None:
        self.images, self.rejects = images, rejects

    @classmethod
    def live(cls, spark: SparkSession) -> ImageCounters:
        context = spark.sparkContext
        return cls(context.accumulator(0), context.accumulator(0))

    @classmethod
    def settled(cls, images: int, rejects: int) -> ImageCounters:
        return cls(Count(images), Count(rejects))


class JobProgress:
    """Publishes a job's progress to `uri` every `seconds` while it is entered as a context
    manager (a job that raises is recorded as failed); with no `uri`, writes nothing."""

    def __init__(
        self,
        spark: SparkSession,
        uri: str | None,
        job: str,
        seconds: float = DEFAULT_PROGRESS_SECONDS,
    ) -> None:
        self.spark, self.uri, self.job, self.seconds = spark, uri, job, seconds
        self.started = time.monotonic()
        self.writes = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # the thread's writes and a new phase's
        self._phase, self._phase_started = "running", self.started
        self._total: int | None = None
        self._counters: ImageCounters | None = None
        self._counting_since: float | None = None  # the first counted phase's start: the rate's
        self._state = "running"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{job}-progress", daemon=True)

    def __enter__(self) -> JobProgress:
        if self.uri is not None:
            self.write()
            self._thread.start()
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.finish("failed" if kind else "finished")

    def phase(self, name: str, total: int | None = None, counters: ImageCounters | None = None):
        """A new phase: `total` images counted by `counters`, or Spark's tasks without them."""
        with self._lock:
            self._phase, self._phase_started = name, time.monotonic()
            self._total, self._counters = total, counters
            if counters is not None and self._counting_since is None:
                self._counting_since = self._phase_started
        self.write()

    def finish(self, state: str = "finished") -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.seconds + 5)
        with self._lock:
            self._state = state
        self.write()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            phase, phase_started, total = self._phase, self._phase_started, self._total
            counters, state = self._counters, self._state
            counting_since = self._counting_since
        now = time.monotonic()
        rejects = None
        if counters is not None:
            unit, done, rejects = "images", counters.images.value, counters.rejects.value
            done = min(done, total) if total is not None else done  # a retried task counts twice
        else:
            unit, done, total = "tasks", *self._active_tasks()
        # Images per second since the model started; tasks per second in this phase.
        since = counting_since if counters is not None else phase_started
        seconds = now - (since if since is not None else phase_started)
        rate = done / seconds if done and seconds > 0 else None
        left = None if total is None else max(total - done, 0)
        return {
            "job": self.job,
            # Which Spark application to open in the history server (the DAG's link).
            "spark_application_id": self.spark.sparkContext.applicationId,
            "state": state,
            "phase": phase,
            "unit": unit,
            "done": done,
            "total": total,
            "percent": round(100 * done / total, 1) if total else None,
            "rejects": rejects,
            "rate_per_second": None if rate is None else round(rate, 2),
            "eta_seconds": round(left / rate, 1) if rate and left is not None else None,
            "elapsed_seconds": round(now - self.started, 1),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "writes": self.writes + 1,
        }

    def _active_tasks(self) -> tuple[int, int | None]:
        """Completed and total tasks of the stages running now ((0, None) between stages)."""
        tracker = self.spark.sparkContext.statusTracker()
        stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
        stages = [s for s in stages if s is not None]
        if not stages:
            return 0, None
        return sum(s.numCompletedTasks for s in stages), sum(s.numTasks for s in stages)

    def write(self) -> None:
        if self.uri is None:
            return
        try:
            with self._write_lock:
                snapshot = self.snapshot()
                storage.write_json(self.spark, self.uri, snapshot)
                self.writes = snapshot["writes"]
        except Exception as exc:  # progress is for people; the job goes on without it
            print(f"{self.job}: progress not written to {self.uri}: {exc}", file=sys.stderr)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.write()


@dataclass(frozen=True, kw_only=True)
class ProgressOptions:
    """--progress and --progress-seconds in a job's config (add_progress_arguments' defaults)."""

    progress: str | None = None
    progress_seconds: float = DEFAULT_PROGRESS_SECONDS


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    """--progress and --progress-seconds, the same for every job (ProgressOptions holds them)."""
    parser.add_argument(
        "--progress",
        default=None,
        help="file or URI (s3:// on EMR) of the job's progress JSON, overwritten while it runs "
        "(default: none)",
    )
    parser.add_argument(
        "--progress-seconds",
        type=float,
        default=DEFAULT_PROGRESS_SECONDS,
        help=f"seconds between writes of --progress (default {DEFAULT_PROGRESS_SECONDS:.0f})",
    )
