"""The run's parameters as a typed, validated object (no Airflow needed to build one)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emr_pipeline.settings import DEFAULT_RELEASE_LABEL
from emr_pipeline.uris import split_s3_uri

BUILTIN_WEIGHTS = ("imagenet", "random")
WEIGHTS_SUFFIXES = (".weights.h5", ".h5")  # what jobs/featurize.py accepts as a weights file
MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 60, 7 * 24 * 3600  # AutoTerminationPolicy's limits
FEATURE_SIZE = 1280  # MobileNetV2's penultimate layer: PCA cannot keep more components
# EC2 instance types: family (with a generation digit), a dot, a size: m5.xlarge, m7g.2xlarge,
# r7iz.metal-16xl, u-6tb1.metal.
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$")
RELEASE_LABEL = re.compile(r"^emr-(spark-)?[0-9]+\.[0-9]+\.[0-9]+$")


class InvalidRunOptionsError(ValueError):
    """A parameter combination the pipeline cannot run; the message names the parameter."""


@dataclass(frozen=True)
class RunOptions:
    input_uri: str
    output_uri: str
    weights: str = "imagenet"
    pca_k: int | None = 2
    pca_variance: float | None = None
    batch_size: int = 32
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
        if self.pca_k is not None and self.pca_k > FEATURE_SIZE:
            raise InvalidRunOptionsError(
                f"pca_k must be at most {FEATURE_SIZE} (the feature size), got {self.pca_k}"
            )
        for name in ("master_instance_type", "core_instance_type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not INSTANCE_TYPE.match(value):
                raise InvalidRunOptionsError(
                    f"{name}: expected an EC2 instance type such as m5.xlarge, got {value!r}"
                )
        if not RELEASE_LABEL.match(str(self.release_label)):
            raise InvalidRunOptionsError(
                f"release_label: expected e.g. emr-7.13.0 or emr-spark-8.0.0, "
                f"got {self.release_label!r}"
            )
        for name in ("batch_size", "task_cpus", "sensor_timeout_seconds"):
            if getattr(self, name) < 1:
                raise InvalidRunOptionsError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.partitions is not None and self.partitions < 1:
            raise InvalidRunOptionsError(f"partitions must be at least 1, got {self.partitions}")
        if not self.poke_interval_seconds > 0:
            raise InvalidRunOptionsError(
                f"poke_interval_seconds must be positive, got {self.poke_interval_seconds}"
            )
        if not MIN_IDLE_TIMEOUT <= self.idle_timeout_seconds <= MAX_IDLE_TIMEOUT:
            raise InvalidRunOptionsError(
                f"idle_timeout_seconds must be in [{MIN_IDLE_TIMEOUT}, {MAX_IDLE_TIMEOUT}], "
                f"got {self.idle_timeout_seconds}"
            )
        if self.core_instance_count < 0:
            raise InvalidRunOptionsError(
                f"core_instance_count must not be negative, got {self.core_instance_count}"
            )
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
