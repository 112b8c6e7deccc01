"""What a run needs from this Airflow installation rather than from its parameters."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from emr_pipeline.options import RunOptions
from emr_pipeline.parameters import InvalidRunOptionsError


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
