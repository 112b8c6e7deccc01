"""The run's parameters as a typed, validated object (no Airflow needed to build one)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emr_pipeline.settings import DEFAULT_RELEASE_LABEL
from emr_pipeline.uris import split_s3_uri

BUILTIN_WEIGHTS = ("imagenet", "random")
WEIGHTS_SUFFIXES = (".weights.h5", ".h5")  # what jobs/featurize.py accepts as a weights file
MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 60, 7 * 24 * 3600  # AutoTerminationPolicy's limits


class InvalidRunOptionsError(ValueError):
    """A parameter combination the pipeline cannot run; the message names the parameter."""


@dataclass(frozen=True)
class RunOptions:
    input_uri: str
    output_uri: str
    weights: str = "imagenet"
    pca_k: int | None = 2
    pca_variance: float | None = None
    batch_size: int = 64
    partitions: int | None = None
    release_label: str = DEFAULT_RELEASE_LABEL
    master_instance_type: str = "m5.xlarge"
    core_instance_type: str = "m5.2xlarge"
    core_instance_count: int = 2
    core_spot: bool = False
    task_cpus: int = 2
    idle_timeout_seconds: int = 3600
    overwrite: bool = False
    poke_interval_seconds: float = 60
    sensor_timeout_seconds: int = 6 * 3600
    deferrable: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunOptions:
        """Options from a run's params (unknown keys ignored), checked with `validate`."""
        known = cls.__dataclass_fields__
        options = cls(**{k: v for k, v in params.items() if k in known})
        options.validate()
        return options

    def validate(self) -> None:
        """Raise InvalidRunOptionsError for what JSON schema on the Params cannot express."""
        for name in ("input_uri", "output_uri"):
            try:
                split_s3_uri(getattr(self, name))
            except ValueError as exc:
                raise InvalidRunOptionsError(f"{name}: {exc}") from exc
        if self.weights not in BUILTIN_WEIGHTS:
            if not self.weights.endswith(WEIGHTS_SUFFIXES):
                raise InvalidRunOptionsError(
                    f"weights: expected imagenet, random or an s3:// URI of a Keras "
                    f".weights.h5 file, got {self.weights!r}"
                )
            try:
                split_s3_uri(self.weights)
            except ValueError as exc:  # the cluster cannot see the Airflow worker's disk
                raise InvalidRunOptionsError(f"weights: {exc}") from exc
        if self.pca_variance is None and self.pca_k is None:
            raise InvalidRunOptionsError("set pca_k or pca_variance")
        if self.pca_variance is not None and not 0 < self.pca_variance <= 1:
            raise InvalidRunOptionsError(f"pca_variance must be in (0, 1], got {self.pca_variance}")
        if self.pca_k is not None and self.pca_k < 1:
            raise InvalidRunOptionsError(f"pca_k must be at least 1, got {self.pca_k}")
        if not MIN_IDLE_TIMEOUT <= self.idle_timeout_seconds <= MAX_IDLE_TIMEOUT:
            raise InvalidRunOptionsError(
                f"idle_timeout_seconds must be in [{MIN_IDLE_TIMEOUT}, {MAX_IDLE_TIMEOUT}], "
                f"got {self.idle_timeout_seconds}"
            )
        if self.core_instance_count < 0:
            raise InvalidRunOptionsError("core_instance_count must not be negative")
        if self.core_spot and self.core_instance_count == 0:
            raise InvalidRunOptionsError("core_spot needs at least one core instance")
        if self.output_uri.rstrip("/") == self.input_uri.rstrip("/"):
            raise InvalidRunOptionsError("output_uri must differ from input_uri")

    @property
    def pca_args(self) -> list[str]:
        # pca.py takes one of --k / --variance; a variance target wins over the default k.
        if self.pca_variance is not None:
            return ["--variance", str(self.pca_variance)]
        return ["--k", str(self.pca_k)]


def check_worker_support(
    options: RunOptions, find_module: Callable[[str], object] = importlib.util.find_spec
) -> None:
    """What the run needs from this Airflow installation (not from its parameters)."""
    if options.deferrable and find_module("aiobotocore") is None:
        # The provider's EMR/S3 triggers are async and need aiobotocore in the triggerer.
        raise InvalidRunOptionsError(
            "deferrable=true needs aiobotocore on the workers and the triggerer "
            "(pip install 'apache-airflow-providers-amazon[aiobotocore]'); or trigger with "
            "deferrable=false"
        )
