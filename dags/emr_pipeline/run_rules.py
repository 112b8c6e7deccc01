"""The rules a run's parameters must meet beyond each one's declared type and bounds (those are
the parameter table's, emr_pipeline.options): the weights' form, and what several parameters
must agree on. Pure: a run refused here has made no AWS call.
"""

from __future__ import annotations

import re
from typing import Any

from emr_pipeline.job_contract import contract
from emr_pipeline.parameters import InvalidRunOptionsError
from emr_pipeline.release_label import check_release_label
from emr_pipeline.step_watch import progress_seconds
from emr_pipeline.uris import check_prefixes_apart

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
    if options.precision == "bf16" and options.runtime == "tensorflow":
        # featurize would refuse it on the cluster, after paying for the nodes.
        raise InvalidRunOptionsError(
            "precision: bf16 runs only with runtime openvino (the TensorFlow runtime is "
            "f32 only); choose runtime openvino, or precision f32"
        )
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
