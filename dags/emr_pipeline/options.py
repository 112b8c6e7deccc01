"""The run's parameters (`RunOptions`: the table every parameter is declared in once) and the
rules they must meet: each one's type and bounds, then what no single bound expresses (the
weights' form, what several parameters must agree on, the EMR release, the nodes, and what the
run needs from this Airflow installation).

Pure: a run refused here has made no AWS call.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emr_pipeline.contract import contract
from emr_pipeline.parameter import (
    CLUSTER,
    DATA,
    MODEL,
    WAITING,
    InvalidRunOptionsError,
    check_value,
    declared,
    parameter,
)
from emr_pipeline.uris import check_prefixes_apart, hadoop_safe_s3_uri

DEFAULT_RELEASE_LABEL = "emr-7.13.0"  # newest EMR 7: Spark 3.5, Python 3.11 on the nodes

_VERSION_NUMBER = r"(?:0|[1-9][0-9]*)"

RELEASE_LABEL = re.compile(
    rf"emr-(?P<spark>spark-)?(?P<major>{_VERSION_NUMBER})\.{_VERSION_NUMBER}\.{_VERSION_NUMBER}"
)

# EMR 7 is the first release whose nodes have Python 3.11, which the bootstrap installs for;
# the emr-spark-x.y.z labels start at 8.
MIN_EMR_MAJOR = {"emr-": 7, "emr-spark-": 8}


def check_release_label(label: str) -> None:
    """InvalidRunOptionsError unless `label` is emr-x.y.z or emr-spark-x.y.z of a release whose
    nodes have the Python the bootstrap installs for."""
    release = RELEASE_LABEL.fullmatch(label)
    if not release:
        raise InvalidRunOptionsError(
            f"release_label: expected e.g. emr-7.13.0 or emr-spark-8.0.0, got {label!r}"
        )
    family = "emr-spark-" if release["spark"] else "emr-"
    if int(release["major"]) < MIN_EMR_MAJOR[family]:
        raise InvalidRunOptionsError(
            f"release_label: {label}'s nodes have no Python 3.11, which the bootstrap installs "
            f"the jobs' packages for; use emr-{MIN_EMR_MAJOR['emr-']}.x or newer"
        )


BUILTIN_WEIGHTS = contract.BUILTIN_WEIGHTS

RUNTIMES, PRECISIONS = contract.RUNTIMES, contract.PRECISIONS  # the form's enums too

MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 60, 7 * 24 * 3600  # AutoTerminationPolicy's limits

# A poke interval under a second becomes a zero-second waiter delay in deferrable mode (the
# provider's triggers take whole seconds): a tight loop of EMR API calls.
MIN_POKE_INTERVAL = 1

FEATURE_SIZE = contract.FEATURE_SIZE  # PCA cannot keep more components

# EC2 instance types: family (with a generation digit), a dot, a size: m5.xlarge, m7g.2xlarge,
# r7iz.metal-16xl, u-6tb1.metal. The whole string: the form's pattern, so anchored.
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$"

S3_URI_PATTERN = r"^s3[an]?://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"

# Longer waits overflow deferrable triggers' timedeltas, and no step of this job needs them.
MAX_SENSOR_TIMEOUT = 7 * 24 * 3600


def instance_type_parameter(default: str, title: str, nodes: str) -> Any:
    """A RunOptions field for the EC2 instance type of `nodes`."""
    return parameter(
        default,
        deployment=True,
        min_length=1,  # the form's check; the pattern is validate's, with its own message
        value_pattern=INSTANCE_TYPE_PATTERN,
        expected="an EC2 instance type such as m5.xlarge",
        section=CLUSTER,
        title=title,
        description=f"EC2 instance type of {nodes}.",
    )


@dataclass(frozen=True)
class RunOptions:
    """Every run parameter, declared once: type, default, bounds and the trigger form's text
    (emr_pipeline.parameter). The form shows them in this order."""

    input_uri: str = parameter(
        dataclasses.MISSING,
        form_default="s3://example-fruit-images/fruits-360/Training/",
        deployment=True,
        pattern=S3_URI_PATTERN,
        expected="an s3:// URI such as s3://bucket/prefix/",
        section=DATA,
        title="Input images",
        description="s3:// prefix of the images, one folder per label: "
        "<prefix>/<Label>/x.jpg. Must not overlap output_uri.",
    )
    output_uri: str = parameter(
        dataclasses.MISSING,
        form_default="s3://example-fruit-features/runs/",
        deployment=True,
        pattern=S3_URI_PATTERN,
        expected="an s3:// URI such as s3://bucket/prefix/",
        section=DATA,
        title="Output root",
        description="s3:// root for results; each run writes under <output_uri>/<run_id>/.",
    )
    overwrite: bool = parameter(
        False,
        section=DATA,
        title="Overwrite a finished run",
        description="Redo a run id that already finished: its own output (the prefix "
        "holding its marker) is deleted first. Never deletes another run's output or "
        "anything this DAG did not write; a new run id always gets a fresh prefix.",
    )
    incremental: bool = parameter(
        True,
        section=DATA,
        title="Reuse unchanged images' features",
        description="Reuse the vectors of the latest earlier run of this DAG that passed, "
        "for the same input and model, for every image unchanged since (same key, size and "
        "modification time); featurize only new, changed and rejected images. The output "
        "still holds every image's vector, and PCA is fitted on all of them.",
    )
    full_refresh: bool = parameter(
        False,
        section=DATA,
        title="Full refresh",
        description="Featurize every image again, whatever incremental says: when an "
        "earlier run's features are in doubt, or to start a new line of runs.",
    )
    weights: str = parameter(
        "imagenet",
        deployment=True,
        min_length=1,
        section=MODEL,
        title="Model weights",
        description="imagenet (downloaded on the nodes), random (fixed seed, for tests) or "
        "the s3:// URI of a Keras .weights.h5 file of the whole MobileNetV2.",
    )
    pca_k: int | None = parameter(
        contract.DEFAULT_PCA_K,
        minimum=1,
        maximum=FEATURE_SIZE,
        why="the feature size",
        section=MODEL,
        title="PCA components",
        description="Number of components (ignored if pca_variance).",
    )
    pca_variance: float | None = parameter(
        None,
        exclusive_minimum=0,
        maximum=1,
        section=MODEL,
        title="PCA variance target",
        description="Smallest k reaching this share of variance, e.g. 0.95; wins over pca_k.",
    )
    batch_size: int = parameter(
        contract.DEFAULT_BATCH_SIZE,
        minimum=1,
        maximum=4096,
        section=MODEL,
        title="Batch size",
        description="Images per model call (and per Arrow batch).",
    )
    runtime: str = parameter(
        contract.DEFAULT_RUNTIME,
        enum=RUNTIMES,
        section=MODEL,
        title="Model runtime",
        description="What runs the model in the Spark workers. openvino: about 2x faster, "
        "features equal to TensorFlow's within 1e-4. tensorflow: the reference.",
    )
    precision: str = parameter(
        contract.DEFAULT_PRECISION,
        enum=PRECISIONS,
        section=MODEL,
        title="Inference precision",
        description="bf16: about 1.5x faster again on CPUs with BF16 (Intel AMX, AMD "
        "Zen 4: m7i, m7a..., not the default m5), features within cosine 0.999 of f32. "
        "Needs runtime openvino. Where the CPU lacks BF16 the run falls back to f32, and "
        "the report says which ran.",
    )
    partitions: int | None = parameter(
        None,
        minimum=1,
        maximum=1_000_000,
        why="about 8 images a task for 8 million images; Spark's count is a 32-bit integer",
        section=MODEL,
        title="Partitions",
        description="Spark partitions for featurize; empty = about 128 small images per task.",
    )
    release_label: str = parameter(
        DEFAULT_RELEASE_LABEL,
        deployment=True,
        pattern=r"^emr-",
        expected="e.g. emr-7.13.0 or emr-spark-8.0.0",
        section=CLUSTER,
        title="EMR release",
        description="emr-7.13.0 (Spark 3.5) by default; emr-spark-8.0.0 runs Spark 4.",
    )
    master_instance_type: str = instance_type_parameter(
        "m5.xlarge", "Primary node type", "the primary node (runs the Spark driver)"
    )
    core_instance_type: str = instance_type_parameter(
        "m5.2xlarge", "Core node type", "the core nodes (run the featurize tasks)"
    )
    core_instance_count: int = parameter(
        2,
        deployment=True,
        minimum=0,
        maximum=100,
        section=CLUSTER,
        title="Core nodes",
        description="0 runs everything on the primary node.",
    )
    core_spot: bool = parameter(
        False,
        deployment=True,
        section=CLUSTER,
        title="Spot core nodes",
        description="Core nodes on the spot market (capped at the on-demand price).",
    )
    task_cpus: int = parameter(
        1,
        minimum=1,
        maximum=16,
        section=CLUSTER,
        title="CPUs per task",
        description=(
            "spark.task.cpus and the model's threads per Python worker. 1: a worker per core, "
            "so some decode while others run the model."
        ),
    )
    idle_timeout_seconds: int = parameter(
        3600,
        deployment=True,
        minimum=MIN_IDLE_TIMEOUT,
        maximum=MAX_IDLE_TIMEOUT,
        why="EMR's AutoTerminationPolicy limits",
        section=CLUSTER,
        title="Idle timeout (s)",
        description="EMR terminates the cluster after this long without work, even if "
        "Airflow never gets to terminate it.",
    )
    poke_interval_seconds: float = parameter(
        60,
        deployment=True,
        minimum=MIN_POKE_INTERVAL,
        why="shorter intervals hammer the EMR API",
        section=WAITING,
        title="Poke interval (s)",
        description="How often sensors check steps and outputs (at least 1 s).",
    )
    sensor_timeout_seconds: int = parameter(
        6 * 3600,
        deployment=True,
        minimum=1,
        maximum=MAX_SENSOR_TIMEOUT,
        why="7 days",
        section=WAITING,
        title="Sensor timeout (s)",
        description="How long each sensor waits before failing.",
    )
    stuck_after_seconds: int = parameter(
        15 * 60,
        deployment=True,
        minimum=10,
        maximum=MAX_SENSOR_TIMEOUT,
        section=WAITING,
        title="Stuck after (s)",
        description="A running step whose progress has not moved for this long is reported "
        "as stuck in its sensor's log.",
    )
    fail_when_stuck: bool = parameter(
        False,
        deployment=True,
        section=WAITING,
        title="Fail when stuck",
        description="Fail the run (and so end its cluster) when a step is stuck.",
    )
    deferrable: bool = parameter(
        True,
        deployment=True,
        section=WAITING,
        title="Deferrable sensors",
        description="Wait in the triggerer instead of holding a worker slot.",
    )

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
        return dataclasses.replace(self, **self.normalized_uris())

    def normalized_uris(self) -> dict[str, str]:
        """{field: URI as Hadoop resolves it} of every s3:// parameter (the weights only when a
        file); InvalidRunOptionsError naming the first one that is not a safe s3:// URI."""
        names = [*URI_FIELDS, *(() if self.weights in BUILTIN_WEIGHTS else ("weights",))]
        return {name: hadoop_safe_s3_uri(name, getattr(self, name)) for name in names}

    def validate(self) -> None:
        """Raise InvalidRunOptionsError for a value outside its declared type and bounds (what
        the form checks, for runs triggered without it), then for a rule no single field's
        bounds express (check_run_rules)."""
        for field, annotation in declared(type(self)):
            check_value(field, annotation, getattr(self, field.name))
        check_run_rules(self)


URI_FIELDS = ("input_uri", "output_uri")  # the run's data, which must lie apart

# vCPUs by size, for the general families (m, c, r...): large 2, xlarge 4, Nxlarge 4N.
_SIZE = re.compile(r"^(?:(?P<n>[0-9]+)?x)?large$")


def vcpus(instance_type: str) -> int | None:
    """The vCPUs of a `<family>.<size>` type where the size says it; None (metal, medium,
    nano...) where it does not."""
    size = instance_type.partition(".")[2]
    match = _SIZE.match(size)
    if match is None:
        return None
    return 4 * int(match["n"] or 1) if "x" in size else 2


def _check_nodes(options: Any) -> None:
    """What the cluster's nodes must be for the jobs to run at all: x86_64, and room for one
    task (Spark never schedules a task that needs more CPUs than an executor has)."""
    types = {"master_instance_type": options.master_instance_type}
    if options.core_instance_count:
        types["core_instance_type"] = options.core_instance_type
    for name, instance_type in types.items():
        if contract.is_arm64(instance_type):
            raise InvalidRunOptionsError(
                f"{name}: {instance_type} is a Graviton (arm64) type, on which the bootstrap "
                "cannot install the jobs' pinned wheels (tensorflow-cpu 2.21.0 has no aarch64 "
                "wheel; OpenVINO's needs glibc 2.35, EMR 7's nodes have 2.34): the cluster "
                "would fail after EC2 is paid for. Choose an x86_64 type (m5, m6i, m7i, c6i...)"
            )
    name = "core_instance_type" if options.core_instance_count else "master_instance_type"
    task_node = types[name]
    available = vcpus(task_node)
    if available is not None and options.task_cpus > available:
        raise InvalidRunOptionsError(
            f"task_cpus: {options.task_cpus} is more than the {available} vCPUs of a "
            f"{name} {task_node} node, where the tasks run: Spark could never schedule one "
            f"(every step would hang). Choose task_cpus <= {available} or a larger type"
        )


def check_run_rules(options: Any) -> None:
    """Raise InvalidRunOptionsError for the first rule `options` (a RunOptions) breaks."""
    weights = options.weights
    if weights not in contract.BUILTIN_WEIGHTS and not weights.endswith(contract.WEIGHTS_SUFFIXES):
        raise InvalidRunOptionsError(
            f"weights: expected imagenet, random or an s3:// URI of a Keras .weights.h5 file, "
            f"got {weights!r}"
        )
    # The jobs' own rule: featurize would refuse the pair on the cluster, after the nodes.
    if problem := contract.precision_problem(options.runtime, options.precision):
        raise InvalidRunOptionsError(problem)
    uris = options.normalized_uris()  # the cluster cannot see the Airflow worker's disk
    check_prefixes_apart({name: uris[name] for name in URI_FIELDS})
    if options.pca_variance is None and options.pca_k is None:
        raise InvalidRunOptionsError("set pca_k or pca_variance")
    check_release_label(options.release_label)
    interval = progress_seconds(options.poke_interval_seconds)
    if options.stuck_after_seconds < 2 * interval:
        raise InvalidRunOptionsError(
            f"stuck_after_seconds: at least {2 * interval:g} s, twice the interval at which "
            f"a step rewrites its progress ({interval:g} s at poke_interval_seconds="
            f"{options.poke_interval_seconds:g}); got {options.stuck_after_seconds}"
        )
    if options.core_spot and options.core_instance_count == 0:
        raise InvalidRunOptionsError("core_spot needs at least one core instance")
    _check_nodes(options)


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


# A step's progress file is rewritten at the sensors' poke interval, within these bounds: one
# S3 PUT per write (at most 720 an hour; 60 at the default one-minute poke interval).
PROGRESS_SECONDS_BOUNDS = (5.0, 60.0)


def progress_seconds(poke_interval_seconds: float) -> float:
    """How often a step rewrites its progress file: as often as it is read, within bounds."""
    low, high = PROGRESS_SECONDS_BOUNDS
    return min(max(float(poke_interval_seconds), low), high)
