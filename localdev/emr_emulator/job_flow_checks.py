"""What EMR refuses at RunJobFlow (and ModifyCluster) that moto accepts, checked as EMR does.

`refusals(request, region)` lists every reason EMR would answer ValidationException for a
RunJobFlow request (the boto3-shaped dict): a release label EMR does not have in the region, an
instance type that release does not support (moto ships both lists, taken from EMR), an unknown
configuration classification, `export` outside a `*-env` classification, emrfs-site encryption
together with a security configuration, an AutoTerminationPolicy idle timeout outside 60 s to
7 days, and a StepConcurrencyLevel the emulator cannot honour (it runs one step at a time, so
anything but 1 is refused instead of silently ignored).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from moto.utilities.utils import load_resource

# EMR 7's configuration classifications (Amazon EMR Release Guide, "Configure applications").
KNOWN_CLASSIFICATIONS = frozenset(
    {
        "capacity-scheduler", "container-executor", "container-log4j", "core-site",
        "docker-conf", "emrfs-site", "flink-conf", "flink-log4j", "flink-log4j-cli",
        "hadoop-env", "hadoop-log4j", "hadoop-ssl-client", "hadoop-ssl-server",
        "hadoop-kms-acls", "hadoop-kms-env", "hadoop-kms-log4j", "hadoop-kms-site", "hbase",
        "hbase-env", "hbase-log4j", "hbase-metrics", "hbase-policy", "hbase-site",
        "hcatalog-env", "hdfs-encryption-zones", "hdfs-env", "hdfs-site", "hive",
        "hive-env", "hive-exec-log4j2", "hive-llap-daemon-log4j2", "hive-log4j2",
        "hive-site", "hiveserver2-site", "hue-ini", "httpfs-env", "httpfs-site",
        "iceberg-defaults", "jupyter-hub-conf", "jupyter-notebook-conf", "jupyter-s3-conf",
        "jupyter-sparkmagic-conf", "livy-conf", "livy-env", "livy-log4j2", "mapred-env",
        "mapred-site", "oozie-env", "oozie-log4j", "oozie-site", "phoenix-hbase-metrics",
        "phoenix-hbase-site", "phoenix-log4j", "phoenix-metrics", "pig-env", "pig-log4j",
        "pig-properties", "presto-config", "presto-env", "presto-log", "presto-node",
        "ranger-kms-dbks-site", "spark", "spark-defaults", "spark-env", "spark-hive-site",
        "spark-log4j2", "spark-metrics", "sqoop-env", "sqoop-oraoop-site", "sqoop-site",
        "tez-site", "trino-config", "trino-env", "trino-log", "trino-node", "yarn-env",
        "yarn-site", "zeppelin-env", "zeppelin-site", "zookeeper-config", "zookeeper-log4j",
    }
)  # fmt: skip
MIN_IDLE_TIMEOUT = 60
MAX_IDLE_TIMEOUT = 7 * 24 * 3600


@cache
def release_labels(region: str) -> frozenset[str]:
    return frozenset(load_resource(f"emr/resources/release-labels-{region}.json"))


@cache
def instance_types(release_label: str) -> frozenset[str] | None:
    """The instance types EMR supports for the release; None where moto has no list."""
    try:
        return frozenset(load_resource(f"emr/resources/instance-types-{release_label}.json"))
    except FileNotFoundError:
        return None


def _instance_types_of(instances: Mapping[str, Any]) -> list[str]:
    types = [instances.get("MasterInstanceType"), instances.get("SlaveInstanceType")]
    types += [group.get("InstanceType") for group in instances.get("InstanceGroups", [])]
    for fleet in instances.get("InstanceFleets", []):
        types += [spec.get("InstanceType") for spec in fleet.get("InstanceTypeConfigs", [])]
    return [t for t in types if t]


def classification_refusals(configurations: Iterable[Mapping[str, Any]]) -> list[str]:
    reasons = []
    for config in configurations:
        name = config.get("Classification", "")
        if name not in KNOWN_CLASSIFICATIONS:
            reasons.append(f"The classification '{name}' is not valid.")
        for nested in config.get("Configurations", []) or []:
            nested_name = nested.get("Classification", "")
            if nested_name != "export" or not name.endswith("-env"):
                reasons.append(f"The classification '{nested_name}' is not valid inside '{name}'.")
    return reasons


def _encrypts_with_emrfs(configurations: Iterable[Mapping[str, Any]]) -> bool:
    prefixes = ("fs.s3.enableServerSideEncryption", "fs.s3.serverSideEncryption")
    return any(
        key.startswith(prefixes)
        for config in configurations
        if config.get("Classification") == "emrfs-site"
        for key in config.get("Properties") or {}
    )


def refusals(request: Mapping[str, Any], region: str) -> list[str]:
    """Why EMR would refuse this RunJobFlow request; empty when it would accept it."""
    reasons: list[str] = []
    label = request.get("ReleaseLabel")
    if label and label not in release_labels(region):
        reasons.append(f"The specified release label '{label}' is not valid in {region}.")
    elif label and (supported := instance_types(label)) is not None:
        for name in _instance_types_of(request.get("Instances", {})):
            if name not in supported:
                reasons.append(f"The instance type '{name}' is not supported in {label}.")
    configurations = request.get("Configurations", []) or []
    reasons += classification_refusals(configurations)
    if request.get("SecurityConfiguration") and _encrypts_with_emrfs(configurations):
        reasons.append(
            "EMRFS encryption settings in emrfs-site cannot be used together with a security "
            "configuration; configure S3 encryption in the security configuration."
        )
    policy = request.get("AutoTerminationPolicy")
    if policy is not None:
        idle = policy.get("IdleTimeout")
        if not isinstance(idle, int) or not MIN_IDLE_TIMEOUT <= idle <= MAX_IDLE_TIMEOUT:
            reasons.append(
                f"AutoTerminationPolicy IdleTimeout must be between {MIN_IDLE_TIMEOUT} and "
                f"{MAX_IDLE_TIMEOUT} seconds, got {idle}."
            )
    reasons += step_concurrency_refusals(request.get("StepConcurrencyLevel", 1))
    return reasons


def step_concurrency_refusals(level: Any) -> list[str]:
    if level in (None, 1):
        return []
    return [
        f"StepConcurrencyLevel {level}: the emulator runs one step at a time per cluster, so "
        f"it refuses a level above 1 rather than ignore it (EMR allows up to 256)."
    ]
