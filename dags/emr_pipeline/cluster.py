"""The RunJobFlow request for a run's transient cluster, and the tags and name that find it again.

Built as a Python dict (never a JSON template): EmrCreateJobFlowOperator literal_evals string
overrides, which breaks on JSON's true/false/null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from emr_pipeline.options import RunOptions
from emr_pipeline.settings import DeploymentSettings

# EMR 7 ships Python 3.9 and 3.11; the bootstrap installs the requirements for 3.11.
NODE_PYTHON = "/usr/bin/python3.11"

# Created world-writable by the bootstrap; holds pre-cached imagenet weights.
KERAS_HOME = "/var/cache/keras"

_MAX_TAG_VALUE = 256

# The nodes' volumes, set here rather than left to EMR's defaults (which vary with the instance
# type and the release, and which the API does not report for the root volume), so that the
# cost estimate prices exactly what a run provisions: the root volume at EMR 7's default size
# as gp3 at its included baseline, and one gp3 data volume per node for Spark's local files
# (this job's shuffles and spills are small).
ROOT_VOLUME = {"EbsRootVolumeSize": 15, "EbsRootVolumeIops": 3000, "EbsRootVolumeThroughput": 125}

VOLUME_TYPE = "gp3"

DATA_VOLUME_GB = 32

DATA_VOLUMES = {
    "EbsBlockDeviceConfigs": [
        {
            "VolumeSpecification": {"VolumeType": VOLUME_TYPE, "SizeInGB": DATA_VOLUME_GB},
            "VolumesPerInstance": 1,
        }
    ]
}


@dataclass(frozen=True)
class ClusterContext:
    """What the cluster needs besides the run's parameters."""

    dag_id: str
    run_id: str
    run_key: str
    deployment_id: str
    owner: str
    log_uri: str
    bootstrap_script_uri: str
    requirements_uri: str
    constraints_uri: str | None = None


def _instance_groups(options: RunOptions) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = [
        {
            "Name": "primary",
            "InstanceRole": "MASTER",
            "Market": "ON_DEMAND",  # losing the primary node loses the cluster
            "InstanceType": options.master_instance_type,
            "InstanceCount": 1,
            "EbsConfiguration": DATA_VOLUMES,
        }
    ]
    if options.core_instance_count > 0:
        # Spot without a BidPrice is capped at the on-demand price.
        groups.append(
            {
                "Name": "core",
                "InstanceRole": "CORE",
                "Market": "SPOT" if options.core_spot else "ON_DEMAND",
                "InstanceType": options.core_instance_type,
                "InstanceCount": options.core_instance_count,
                "EbsConfiguration": DATA_VOLUMES,
            }
        )
    return groups


def spark_configurations(options: RunOptions) -> list[dict[str, Any]]:
    """spark-env and spark-defaults for a TensorFlow-in-Python-UDF workload."""
    threads = str(options.task_cpus)
    return [
        {
            # Drivers (client mode, on the primary node) and executors use the Python the
            # bootstrap installed TensorFlow into.
            "Classification": "spark-env",
            "Configurations": [
                {
                    "Classification": "export",
                    "Properties": {
                        "PYSPARK_PYTHON": NODE_PYTHON,
                        "PYSPARK_DRIVER_PYTHON": NODE_PYTHON,
                        "KERAS_HOME": KERAS_HOME,
                    },
                }
            ],
            "Properties": {},
        },
        {
            "Classification": "spark-defaults",
            "Properties": {
                "spark.pyspark.python": NODE_PYTHON,
                "spark.pyspark.driver.python": NODE_PYTHON,
                # Reused workers keep the model built once per Python process.
                "spark.python.worker.reuse": "true",
                "spark.sql.execution.arrow.pyspark.enabled": "true",
                "spark.sql.execution.arrow.maxRecordsPerBatch": str(options.batch_size),
                # One Python worker per `task_cpus` cores, its model using that many threads,
                # so workers never fight for cores. 1 (the default): a worker per core; while
                # one decodes the others run the model, where a 2-thread worker left a core
                # idle during its own decode (BENCHMARKS.md, issue 33).
                "spark.task.cpus": threads,
                "spark.executorEnv.TF_NUM_INTRAOP_THREADS": threads,
                "spark.executorEnv.TF_NUM_INTEROP_THREADS": "1",
                "spark.executorEnv.OMP_NUM_THREADS": threads,
                "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
                "spark.executorEnv.KERAS_HOME": KERAS_HOME,
                # TensorFlow lives outside the JVM heap: leave the container room for it.
                "spark.executor.memoryOverheadFactor": "0.3",
                # A lost spot node should not fail the step.
                "spark.task.maxFailures": "8" if options.core_spot else "4",
            },
        },
    ]


def emrfs_encryption(deployment: DeploymentSettings) -> list[dict[str, Any]]:
    """emrfs-site: the Spark jobs' S3 writes use server-side encryption (SSE-S3 or SSE-KMS).

    Left out when the deployment names an EMR security configuration: its at-rest S3
    encryption then applies, and EMR refuses both at once.
    """
    if deployment.security_configuration:
        return []
    properties = {"fs.s3.enableServerSideEncryption": "true"}
    if deployment.s3_sse == "aws:kms" and deployment.s3_sse_kms_key_id:
        properties["fs.s3.serverSideEncryption.kms.keyId"] = deployment.s3_sse_kms_key_id
    return [{"Classification": "emrfs-site", "Properties": properties}]


def _tag(key: str, value: str) -> dict[str, str]:
    # run_id is checked to fit (emr_pipeline.plan.check_run_id): only the owner is cut.
    return {"Key": key, "Value": value[:_MAX_TAG_VALUE]}


def build_job_flow_overrides(
    options: RunOptions, deployment: DeploymentSettings, ctx: ClusterContext
) -> dict[str, Any]:
    """The full RunJobFlow request (boto3 shape) for this run."""
    bootstrap_args = [ctx.requirements_uri]
    if ctx.constraints_uri:
        bootstrap_args += ["--constraints", ctx.constraints_uri]
    if options.weights == "imagenet":
        bootstrap_args.append("--cache-imagenet-weights")
    instances: dict[str, Any] = {
        "InstanceGroups": _instance_groups(options),
        # The run's steps are submitted with the cluster (emr_pipeline.plan): EMR ends the
        # cluster once the last one is done, without waiting for Airflow. Airflow's teardown
        # ends it on every other path, and the idle policy below is the last line of defence.
        "KeepJobFlowAliveWhenNoSteps": False,
        "TerminationProtected": False,
    }
    if deployment.subnet_id:
        instances["Ec2SubnetId"] = deployment.subnet_id
    if deployment.ec2_key_name:
        instances["Ec2KeyName"] = deployment.ec2_key_name
    overrides: dict[str, Any] = {
        "Name": cluster_name(ctx.dag_id, ctx.run_key),
        "ReleaseLabel": options.release_label,
        "Applications": [{"Name": "Spark"}],
        "LogUri": ctx.log_uri,
        "Instances": instances,
        **ROOT_VOLUME,
        "BootstrapActions": [
            {
                "Name": "install-python-deps",
                "ScriptBootstrapAction": {"Path": ctx.bootstrap_script_uri, "Args": bootstrap_args},
            }
        ],
        "Configurations": spark_configurations(options) + emrfs_encryption(deployment),
        "AutoTerminationPolicy": {"IdleTimeout": options.idle_timeout_seconds},
        "StepConcurrencyLevel": 1,
        "ServiceRole": deployment.service_role,
        "JobFlowRole": deployment.job_flow_role,
        "VisibleToAllUsers": True,
        "Tags": [
            _tag("dag_id", ctx.dag_id),
            _tag("deployment", ctx.deployment_id),
            _tag("run_id", ctx.run_id),
            _tag("owner", ctx.owner),
        ],
    }
    if deployment.security_configuration:
        overrides["SecurityConfiguration"] = deployment.security_configuration
    return overrides


ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")

ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")

# The tags that identify a run's cluster (build_job_flow_overrides sets them).
RUN_TAG_KEYS = ("dag_id", "deployment", "run_id")


def cluster_name(dag_id: str, run_key: str) -> str:
    """The Name of a run's cluster: the DAG's id first, so lookups skip other clusters."""
    return f"{dag_id}-{run_key}"[:256]


def run_tags(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """{key: value} of the run-identifying tags in a boto3-style tag list."""
    found = {t["Key"]: t["Value"] for t in tags}
    return {key: found[key] for key in RUN_TAG_KEYS if key in found}
