"""EMR release labels: the default, and which labels a run may ask for."""

from __future__ import annotations

import re

from emr_pipeline.parameters import InvalidRunOptionsError

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
