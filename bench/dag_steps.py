"""Our jobs' command lines in `make bench`: the DAG's own EMR steps, run as the emulator runs them.

The step comes from the DAG's plan (`emr_pipeline.plan.make_plan`, the run parameters' defaults
but those the stage chooses); the command line from the emulator's builder
(`localdev.emr_emulator.commands.spark_submit_command`): the cluster's spark-defaults and
spark-env (spark.task.cpus, the Arrow batch, the model's threads, Python worker reuse), client
mode on `local[*]` and the local driver's Java options. Left out is only what a cluster needs:
S3 (the images are a local folder, as a user runs featurize locally with `--input`, and every
output is local) and the seals (no Airflow connection vouches for a local model cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Imported first: it puts the DAG's package (dags/) on the path, as Airflow does.
import localdev.dag_run  # noqa: F401
from localdev.emr_emulator import node_config
from localdev.emr_emulator.commands import spark_submit_command
from localdev.local_spark import JOBS_DIR

if TYPE_CHECKING:
    from emr_pipeline.options import RunOptions

# Stand-ins for the run's S3 locations: every one is replaced by a local path below.
_INPUT, _OUTPUT = "s3://bench-input/images/", "s3://bench-output/runs/"
_WEIGHTS = "s3://bench-input/bench.weights.h5"
# Application arguments that name a cluster's S3 location, and none of ours: left out.
_CLUSTER_ONLY = ("--model-seals", "--base-seal")


def run_options(**chosen: Any) -> RunOptions:
    """The run parameters' defaults, with a weights file, and what the stage chooses."""
    from emr_pipeline.options import RunOptions

    params = {"input_uri": _INPUT, "output_uri": _OUTPUT, "weights": _WEIGHTS, **chosen}
    return RunOptions.from_params(params)


def step_args(job: str, options: RunOptions) -> list[str]:
    """`spark-submit ...` of the DAG's step `job`, as it is queued on the run's cluster."""
    from emr_pipeline.plan import make_plan
    from emr_pipeline.settings import DAG_ID, DeploymentSettings

    plan = make_plan(
        options, DeploymentSettings(deployment_id="bench"), dag_id=DAG_ID, run_id="bench",
        owner="bench",
    )  # fmt: skip
    return plan.steps[job][0]["HadoopJarStep"]["Args"]


def localized(args: list[str], package_zip: Path, local: Mapping[str, str]) -> list[str]:
    """The step's arguments after `spark-submit`, with its package zip and entrypoint local,
    each application argument in `local` (a flag: its value) given that value, the cluster-only
    ones left out, and those in `local` the step lacks added."""
    py_files = args.index("--py-files")
    submit, entrypoint, application = args[1:py_files], args[py_files + 2], args[py_files + 3 :]
    job = entrypoint.rsplit("/", 1)[-1]
    out: list[str] = []
    pending = dict(local)
    index = 0
    while index < len(application):
        flag, value = application[index], application[index + 1]
        index += 2
        if flag in _CLUSTER_ONLY:
            continue
        value = pending.pop(flag, value)
        if value.startswith("s3://"):
            raise ValueError(f"{job}'s {flag} {value}: give the bench a local path for it")
        out += [flag, value]
    for flag, value in pending.items():
        out += [flag, value]
    return [*submit, "--py-files", str(package_zip), str(JOBS_DIR / job), *out]


def with_application(command: list[str], script: Path, args: list[str]) -> list[str]:
    """A step_command running `script ARGS` instead of the job: the same spark-submit options,
    Java options and cluster confs (what every step pays before its own work)."""
    entry = next(i for i, arg in enumerate(command) if arg.startswith(f"{JOBS_DIR}/"))
    return [*command[:entry], str(script), *args]


def step_command(
    job: str, options: RunOptions, work: Path, local: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """(command, environment overrides) running the DAG's step `job` here, as the emulator
    runs it on a node whose folders are under `work`/node."""
    from emr_pipeline.cluster import spark_configurations
    from emr_pipeline.contract import PACKAGE_NAME, load_job_module

    # Built again each time (the same sources give the same bytes): the job ships its package
    # under the same name, and Spark refuses two files of one name that differ.
    package_zip = work / f"{PACKAGE_NAME}.zip"
    load_job_module(JOBS_DIR, "packaging").build_package_zip(package_zip, JOBS_DIR / PACKAGE_NAME)
    configurations = spark_configurations(options)
    node_root = work / "node"
    defaults = node_config.spark_defaults(configurations, node_root)
    args = localized(step_args(job, options), package_zip, local)
    command = spark_submit_command(args, "local[*]", spark_defaults=defaults)
    return command, node_config.spark_env(configurations, node_root)
