"""The run's parameters as a typed, validated object (no Airflow needed to build one).

Every check here is pure: a run refused by `RunOptions.from_params` has made no AWS call.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emr_pipeline.settings import DEFAULT_RELEASE_LABEL
from emr_pipeline.uris import normalize_s3_uri, overlaps, split_s3_uri

BUILTIN_WEIGHTS = ("imagenet", "random")
WEIGHTS_SUFFIXES = (".weights.h5", ".h5")  # what jobs/featurize.py accepts as a weights file
# featurize's --runtime and --precision choices (the default first); the form's enums too.
RUNTIMES = ("openvino", "tensorflow")
PRECISIONS = ("f32", "bf16")
MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 60, 7 * 24 * 3600  # AutoTerminationPolicy's limits
# A poke interval under a second becomes a zero-second waiter delay in deferrable mode (the
# provider's triggers take whole seconds): a tight loop of EMR API calls.
MIN_POKE_INTERVAL = 1
FEATURE_SIZE = 1280  # MobileNetV2's penultimate layer: PCA cannot keep more components
# EC2 instance types: family (with a generation digit), a dot, a size: m5.xlarge, m7g.2xlarge,
# r7iz.metal-16xl, u-6tb1.metal. Matched against the whole string (fullmatch).
INSTANCE_TYPE = re.compile(r"[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.[a-z0-9][a-z0-9-]*")
_VERSION_NUMBER = r"(?:0|[1-9][0-9]*)"
RELEASE_LABEL = re.compile(
    rf"emr-(?P<spark>spark-)?(?P<major>{_VERSION_NUMBER})\.{_VERSION_NUMBER}\.{_VERSION_NUMBER}"
)
# EMR 7 is the first release whose nodes have Python 3.11, which the bootstrap installs for;
# the emr-spark-x.y.z labels start at 8.
MIN_EMR_MAJOR = {"emr-": 7, "emr-spark-": 8}
# Longer waits overflow deferrable triggers' timedeltas, and no step of this job needs them.
MAX_SENSOR_TIMEOUT = 7 * 24 * 3600
# EMR tag values (the run_id tag): letters, digits, spaces and _ . : / = + - @, at most 256.
_TAG_VALUE = re.compile(r"[\w .:/=+\-@]{1,256}")
# In an S3 key: `:` breaks Hadoop's Path ("Relative path in absolute URI"), and Spark reads the
# input path as a glob pattern, so these characters would select other prefixes than written.
_HADOOP_UNSAFE = re.compile(r"[:*?\[\]{}\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URI_FIELDS = ("input_uri", "output_uri")


class InvalidRunOptionsError(ValueError):
    """A parameter combination the pipeline cannot run; the message names the parameter."""


def _type_error(name: str, expected: str, value: Any) -> InvalidRunOptionsError:
    return InvalidRunOptionsError(
        f"{name}: expected {expected}, got {value!r} ({type(value).__name__})"
    )


def _check_type(name: str, annotation: Any, value: Any) -> None:
    """Exact JSON types: 2.0 is not an integer here (JSON schema would accept it), and a
    boolean is neither an integer nor a number."""
    args = set(typing.get_args(annotation)) or {annotation}
    if value is None:
        if type(None) not in args:
            raise _type_error(name, "a value", value)
        return
    if int in args and float not in args and type(value) is not int:
        raise _type_error(name, "an integer", value)
    if float in args:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(name, "a number", value)
        if not math.isfinite(value):
            raise _type_error(name, "a finite number", value)
    if bool in args and type(value) is not bool:
        raise _type_error(name, "true or false", value)
    if str in args:
        if not isinstance(value, str):
            raise _type_error(name, "a string", value)
        if _CONTROL.search(value):
            raise InvalidRunOptionsError(f"{name}: control characters in {value!r}")
        if value != value.strip():
            raise InvalidRunOptionsError(f"{name}: leading or trailing whitespace in {value!r}")


def hadoop_safe_s3_uri(name: str, value: str) -> str:
    """`value` normalised as Hadoop resolves it; InvalidRunOptionsError naming `name` when it is
    not an s3:// URI or holds a character Hadoop or Spark read differently from S3."""
    try:
        _, key = split_s3_uri(value)
        normalized = normalize_s3_uri(value)
    except ValueError as exc:
        raise InvalidRunOptionsError(f"{name}: {exc}") from exc
    bad = sorted(set(_HADOOP_UNSAFE.findall(key)))
    if bad:
        raise InvalidRunOptionsError(
            f"{name}: {value!r} holds {' '.join(bad)}, which Hadoop or Spark cannot read as "
            "written (':' breaks Hadoop paths; * ? [ ] { } \\ are glob patterns)"
        )
    return normalized


def check_prefixes_apart(prefixes: dict[str, str]) -> None:
    """No two of the named prefixes may hold one another (or be the same), compared as Hadoop
    resolves them. Output inside input makes the next run read our outputs as images; input
    inside output puts the input where a run's output is cleared; logs or job code inside
    either mix with the data."""
    names = list(prefixes)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if overlaps(prefixes[first], prefixes[second]):
                raise InvalidRunOptionsError(
                    f"{first} ({prefixes[first]}) and {second} ({prefixes[second]}) overlap: "
                    "one holds the other. Choose prefixes apart, so that no run reads or "
                    "deletes what another part of the pipeline wrote"
                )


@dataclass(frozen=True)
class RunOptions:
    input_uri: str
    output_uri: str
    weights: str = "imagenet"
    pca_k: int | None = 2
    pca_variance: float | None = None
    batch_size: int = 32
    runtime: str = "openvino"
    precision: str = "f32"
    partitions: int | None = None
    release_label: str = DEFAULT_RELEASE_LABEL
    master_instance_type: str = "m5.xlarge"
    core_instance_type: str = "m5.2xlarge"
    core_instance_count: int = 2
    core_spot: bool = False
    task_cpus: int = 2
    idle_timeout_seconds: int = 3600
    overwrite: bool = False
    incremental: bool = True
    full_refresh: bool = False
    poke_interval_seconds: float = 60
    sensor_timeout_seconds: int = 6 * 3600
    deferrable: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunOptions:
        """Options from a run's params, checked with `validate`, with the URIs in the form
        Hadoop resolves them to (s3://, no `//`, `.` or `..`). An unknown key (a typo in a
        trigger's conf) is refused rather than silently ignored."""
        known = cls.__dataclass_fields__
        for name in params:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise InvalidRunOptionsError(f"{name}: not a parameter of this DAG{hint}")
        options = cls(**dict(params))
        options.validate()
        return options.normalized()

    def normalized(self) -> RunOptions:
        return dataclasses.replace(self, **self._normalized_uris())

    def _normalized_uris(self) -> dict[str, str]:
        """{field: URI as Hadoop resolves it} of every s3:// parameter (the weights only when a
        file); InvalidRunOptionsError naming the first one that is not a safe s3:// URI."""
        names = [*_URI_FIELDS, *(() if self.weights in BUILTIN_WEIGHTS else ("weights",))]
        return {name: hadoop_safe_s3_uri(name, getattr(self, name)) for name in names}

    def validate(self) -> None:
        """Raise InvalidRunOptionsError for what JSON schema on the Params cannot express."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            _check_type(field.name, hints[field.name], getattr(self, field.name))
        if self.weights not in BUILTIN_WEIGHTS and not self.weights.endswith(WEIGHTS_SUFFIXES):
            raise InvalidRunOptionsError(
                f"weights: expected imagenet, random or an s3:// URI of a Keras "
                f".weights.h5 file, got {self.weights!r}"
            )
        for name, allowed in (("runtime", RUNTIMES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise InvalidRunOptionsError(
                    f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.precision == "bf16" and self.runtime == "tensorflow":
            # featurize would refuse it on the cluster, after paying for the nodes.
            raise InvalidRunOptionsError(
                "precision: bf16 runs only with runtime openvino (the TensorFlow runtime is "
                "f32 only); choose runtime openvino, or precision f32"
            )
        uris = self._normalized_uris()  # the cluster cannot see the Airflow worker's disk
        check_prefixes_apart({name: uris[name] for name in _URI_FIELDS})
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
            if not INSTANCE_TYPE.fullmatch(value):
                raise InvalidRunOptionsError(
                    f"{name}: expected an EC2 instance type such as m5.xlarge, got {value!r}"
                )
        release = RELEASE_LABEL.fullmatch(self.release_label)
        if not release:
            raise InvalidRunOptionsError(
                f"release_label: expected e.g. emr-7.13.0 or emr-spark-8.0.0, "
                f"got {self.release_label!r}"
            )
        family = "emr-spark-" if release["spark"] else "emr-"
        if int(release["major"]) < MIN_EMR_MAJOR[family]:
            raise InvalidRunOptionsError(
                f"release_label: {self.release_label}'s nodes have no Python 3.11, which the "
                f"bootstrap installs the jobs' packages for; use emr-{MIN_EMR_MAJOR['emr-']}.x "
                "or newer"
            )
        for name in ("batch_size", "task_cpus", "sensor_timeout_seconds"):
            if getattr(self, name) < 1:
                raise InvalidRunOptionsError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.partitions is not None and self.partitions < 1:
            raise InvalidRunOptionsError(f"partitions must be at least 1, got {self.partitions}")
        if not self.poke_interval_seconds >= MIN_POKE_INTERVAL:
            raise InvalidRunOptionsError(
                f"poke_interval_seconds must be at least {MIN_POKE_INTERVAL} (shorter intervals "
                f"hammer the EMR API), got {self.poke_interval_seconds}"
            )
        if self.sensor_timeout_seconds > MAX_SENSOR_TIMEOUT:
            raise InvalidRunOptionsError(
                f"sensor_timeout_seconds must be at most {MAX_SENSOR_TIMEOUT} (7 days), "
                f"got {self.sensor_timeout_seconds}"
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
            "deferrable=false, or set FRUIT_EMR_DEFERRABLE=false to make that the default"
        )


def check_run_id(run_id: str) -> None:
    """The run id becomes the cluster's run_id tag, which finds the run's cluster again: EMR
    refuses tag values with other characters, and a cut value could match another run."""
    if not _TAG_VALUE.fullmatch(run_id) or run_id.startswith("aws:"):
        raise InvalidRunOptionsError(
            f"run_id: {run_id!r} cannot be an EMR tag value (at most 256 letters, digits, "
            "spaces and _ . : / = + - @, not starting with aws:); trigger the run with another "
            "run id"
        )
