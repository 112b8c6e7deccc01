"""The DAG's Params: the trigger form, made from the RunOptions table.

They render as the form in the UI's Trigger dialog; `airflow dags trigger --conf` takes the
same names. JSON schema checks types and ranges when a run is triggered; RunOptions.validate
checks the same bounds again, and what they cannot express, in preflight.
"""

from __future__ import annotations

from airflow.sdk import Param

from emr_pipeline.options import RunOptions
from emr_pipeline.parameters import declared, form_default, param_schema
from emr_pipeline.settings import ParseTimeSettings


def build_params(settings: ParseTimeSettings) -> dict[str, Param]:
    """{name: Param} of every run parameter, with the deployment's defaults."""
    return {
        field.name: Param(
            settings.param_defaults.get(field.name, form_default(field)),
            **param_schema(field, annotation),
        )
        for field, annotation in declared(RunOptions)
    }
