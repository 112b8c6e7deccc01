"""Plays EMR's part for the DAG tests on plain moto: moto never finishes a step on its own."""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import Any

from emr_pipeline.uris import split_s3_uri
from tests.fakes import ACCOUNT, REGION, aws_client


def server_client(endpoint: str, service: str) -> Any:
    return aws_client(service, endpoint)


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


class EmrStepSimulator:
    """Plays EMR's part: RUNNING steps finish, the next PENDING one starts.

    `outcomes` maps a step name to "COMPLETED" (default) or "FAILED". A completed validate
    step writes a passed report.json where the step's --output says; a failed step gets
    FailureDetails and a stderr.gz under the cluster's LogUri, as EMR writes them.
    """

    STDERR = "featurize: error: input s3://in/ holds 3 images that TensorFlow rejected\n"

    def __init__(
        self, endpoint: str, outcomes: dict[str, str] | None = None, run_seconds: float = 0
    ) -> None:
        self.s3 = server_client(endpoint, "s3")
        self.outcomes = outcomes or {}
        self.run_seconds = run_seconds  # how long a step stays RUNNING
        self._running_since: dict[str, float] = {}
        self.finished: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> EmrStepSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        from moto.emr.models import emr_backends

        while not self._stop.wait(0.05):
            for cluster in list(emr_backends[ACCOUNT][REGION].clusters.values()):
                for step in list(cluster.steps):
                    if step.state != "RUNNING":
                        continue
                    started = self._running_since.setdefault(step.id, time.monotonic())
                    if time.monotonic() - started >= self.run_seconds:
                        self._finish(cluster, step)
                idle = not any(s.state == "RUNNING" for s in cluster.steps)
                if idle and cluster.state not in ("TERMINATING", "TERMINATED"):
                    pending = [s for s in cluster.steps if s.state == "PENDING"]
                    if pending:
                        pending[0].state = "RUNNING"

    def _finish(self, cluster: Any, step: Any) -> None:
        outcome = self.outcomes.get(step.name, "COMPLETED")
        if outcome == "FAILED":
            log_uri = cluster.log_uri.rstrip("/")
            bucket, prefix = split_s3_uri(log_uri)
            key = f"{prefix}/{cluster.id}/steps/{step.id}/stderr.gz".lstrip("/")
            self.s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(self.STDERR.encode()))
            step.failure_details = {
                "Reason": "Unknown Error.",
                "Message": "Step failed with exitCode 2.",
                "LogFile": f"s3://{bucket}/{key}",
            }
        elif step.name == "validate":
            self._write_report(step.args)
        step.state = outcome
        self.finished.append((step.name, outcome))
        if outcome == "FAILED" and step.action_on_failure != "CONTINUE":
            for later in cluster.steps:  # as EMR does: nothing runs after a failed step
                if later.state == "PENDING":
                    later.state = "CANCELLED"

    def _write_report(self, args: list[str]) -> None:
        output_uri = _arg(args, "--output")
        bucket, prefix = split_s3_uri(output_uri)
        # The run's manifest, as validate reads it: preflight wrote it under the run's prefix.
        manifest_key = f"{prefix.rstrip('/')}/manifest.json"
        manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        images = [None] * manifest["images"]
        report = {
            "status": "passed",
            "input": manifest["input_uri"],
            "output": output_uri,
            "images": len(images),
            "features": len(images),
            "rejects": 0,
            "labels": {"Apple": {"features": len(images), "rejects": 0}},
            "rejected_files": [],
            "pca": {"k": 2, "explained_variance": [0.6, 0.2], "cumulative_variance": [0.6, 0.8]},
            "checks": [],
        }
        self.s3.put_object(
            Bucket=bucket, Key=f"{prefix.rstrip('/')}/report.json", Body=json.dumps(report)
        )
