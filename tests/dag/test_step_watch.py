"""A step sensor's look at a running step (emr_pipeline.watch) on moto's S3: the progress
line, when a step counts as stuck, and the new lines of logs EMR uploads whole each time.

The same looks through the real DAG on the emulator: on_emulator/test_watching_on_emulator.py.
"""

from __future__ import annotations

import gzip
import json

import pytest

from emr_pipeline.watch import StepWatch, describe_progress, duration, read_progress

LOG_URI = "s3://log-bucket/emr/"
PROGRESS = "s3://out-bucket/runs/r1/_progress/featurize.json"


@pytest.fixture
def buckets(s3):
    for name in ("log-bucket", "out-bucket"):
        s3.create_bucket(Bucket=name)
    return s3


def running(**fields):
    counted = {"phase": "featurizing", "unit": "images", "total": 100, "rejects": 0}
    return {"state": "running", **counted, **fields}


def test_the_progress_line_says_what_a_person_asks():
    progress = running(
        done=41200, total=90000, percent=45.8, rate_per_second=310.4, rejects=3, eta_seconds=157
    )
    assert describe_progress("featurize", progress) == (
        "featurize: 41,200 / 90,000 images (46%), 310 img/s, 3 rejects, ETA 2 min 37 s"
    )
    tasks = {"state": "running", "phase": "fitting", "unit": "tasks", "done": 3, "total": 8,
             "percent": 37.5, "rate_per_second": 0.5, "eta_seconds": 10}  # fmt: skip
    assert (
        describe_progress("pca", tasks) == "pca: 3 / 8 tasks (38%), fitting, 0.5 tasks/s, ETA 10 s"
    )
    listing = {"state": "running", "phase": "listing", "unit": "tasks", "done": 0, "total": None}
    assert describe_progress("featurize", listing) == "featurize: listing"
    finished = running(done=4, total=4, percent=100.0, rejects=1, state="finished",
                       elapsed_seconds=3725)  # fmt: skip
    assert describe_progress("featurize", finished) == (
        "featurize: 4 / 4 images (100%), 1 rejects, finished after 1 h 2 min"
    )
    assert describe_progress("featurize", None) == "featurize: no progress published yet"
    assert [duration(s) for s in (0, 59.6, 61, 7200)] == [
        "0 s",
        "1 min 0 s",
        "1 min 1 s",
        "2 h 0 min",
    ]


def test_a_step_is_stuck_when_its_progress_stops_moving_not_when_only_its_clock_does(buckets):
    watch = StepWatch("featurize", PROGRESS, stuck_after_seconds=60)
    assert watch.still_for(running(done=10, writes=1), now=0) == 0
    # In a counted phase, rewritten (a new write count and time) without moving: still.
    assert watch.still_for(running(done=10, writes=2, updated_at="later"), now=59) == 59
    assert watch.stuck_message(59) is None
    stuck = running(done=10, writes=3)
    message = watch.stuck_message(watch.still_for(stuck, now=75), stuck)
    assert message.startswith(
        "STUCK? featurize's progress has not moved for 1 min 15 s while the step is RUNNING "
        "(featurize: 10 / 100 images, 0 rejects;"
    )
    assert "fail_when_stuck=true" in message
    # Any move starts the clock again: more images, or another phase.
    assert watch.still_for(running(done=11), now=80) == 0
    assert watch.still_for(running(done=11, phase="writing"), now=90) == 0
    # A phase the driver works through alone (no total) moves with its writes, and stops
    # when they stop.
    alone = {"state": "running", "phase": "preparing the model", "unit": "tasks", "total": None}
    assert watch.still_for({**alone, "writes": 7}, now=100) == 0
    assert watch.still_for({**alone, "writes": 8}, now=130) == 0
    assert watch.still_for({**alone, "writes": 8}, now=200) == 70
    # No progress at all is a value too: a driver hung before its first write is stuck.
    fresh = StepWatch("pca", PROGRESS, stuck_after_seconds=60)
    assert fresh.still_for(None, now=0) == 0 and fresh.still_for(None, now=61) == 61


def test_progress_that_is_missing_or_not_json_reads_as_none(buckets):
    assert read_progress(buckets, PROGRESS) is None
    buckets.put_object(Bucket="out-bucket", Key="runs/r1/_progress/featurize.json", Body=b"{half")
    assert read_progress(buckets, PROGRESS) is None
    body = json.dumps(running(done=1)).encode()
    buckets.put_object(Bucket="out-bucket", Key="runs/r1/_progress/featurize.json", Body=body)
    assert read_progress(buckets, PROGRESS)["done"] == 1


def test_new_log_lines_are_shown_once_and_a_log_is_read_again_only_when_uploaded_again(buckets):
    key = "emr/j-1/steps/s-1/stdout.gz"

    def upload(*lines: str) -> None:
        buckets.put_object(
            Bucket="log-bucket", Key=key, Body=gzip.compress("\n".join(lines).encode())
        )

    watch = StepWatch("featurize", PROGRESS, stuck_after_seconds=60)
    assert watch.new_log_lines(buckets, LOG_URI, "j-1", "s-1") == []  # nothing uploaded yet
    upload("featurize: full run: no earlier run", "line 2")
    assert watch.new_log_lines(buckets, LOG_URI, "j-1", "s-1") == [
        ("stdout", "featurize: full run: no earlier run"),
        ("stdout", "line 2"),
    ]
    assert watch.new_log_lines(buckets, LOG_URI, "j-1", "s-1") == []  # same ETag: not read
    upload("featurize: full run: no earlier run", "line 2", "line 3")
    assert watch.new_log_lines(buckets, LOG_URI, "j-1", "s-1") == [("stdout", "line 3")]
    assert watch.new_log_lines(buckets, None, "j-1", "s-1") == []  # a cluster without LogUri


def test_a_line_is_logged_when_it_is_news_or_half_a_minute_old():
    class Log:
        def __init__(self):
            self.lines = []

        def info(self, message, *args):
            self.lines.append(message % args)

    log, watch = Log(), StepWatch("featurize", PROGRESS, stuck_after_seconds=60)
    for now, line in [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (33, "b"), (34, "a")]:
        watch.say(line, log, now=now)
    assert log.lines == ["a", "b", "b", "a"]
    for state in ("PENDING", "RUNNING", "RUNNING", "COMPLETED"):
        watch.say_state("s-1", state, log)
    assert log.lines[4:] == ["Step s-1 is PENDING", "Step s-1 is RUNNING", "Step s-1 is COMPLETED"]
