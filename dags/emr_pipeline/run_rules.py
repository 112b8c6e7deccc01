"""The rules a run's parameters must meet beyond each one's declared type and bounds (those are
the parameter table's, emr_pipeline.options): the weights' form, and what several parameters
must agree on. Pure: a run refused here has made no AWS call.
"""

from __future__ import annotations

from typing import Any

from emr_pipeline.job_contract import contract
from emr_pipeline.parameters import InvalidRunOptionsError
from emr_pipeline.release_label import check_release_label
from emr_pipeline.step_watch import progress_seconds
from emr_pipeline.uris import check_prefixes_apart

URI_FIELDS = ("input_uri", "output_uri")  # the run's data, which must lie apart


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
