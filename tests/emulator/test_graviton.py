"""A Graviton (arm64) cluster cannot install the project's pinned wheels: the emulator's
bootstrap fails it as EMR would, after the instances started (issue 31, case 5). The DAG
refuses such types before any cluster (tests/dag/on_emulator/test_guards_on_emulator.py)."""

from __future__ import annotations

from tests.emulator.helpers import create_cluster, read_log, steps_in_order, wait_for_cluster
from tests.emulator.test_emr_fidelity import _bootstrap_actions, _ship_bootstrap


def test_the_projects_bootstrap_fails_on_graviton_nodes(emr, s3, bucket):
    path, args = _ship_bootstrap(s3, bucket)
    groups = [
        {"Name": "Primary", "InstanceRole": "MASTER", "InstanceType": "m7g.xlarge",
         "InstanceCount": 1},
        {"Name": "Core", "InstanceRole": "CORE", "InstanceType": "c7g.2xlarge",
         "InstanceCount": 1},
    ]  # fmt: skip
    cluster_id = create_cluster(
        emr,
        bucket,
        BootstrapActions=_bootstrap_actions(path, args),
        Instances={"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True},
    )
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED_WITH_ERRORS"}, timeout=60)
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert (
        "bootstrap action 1 returned a non-zero return code"
        in (status["StateChangeReason"]["Message"])
    )
    assert steps_in_order(emr, cluster_id) == []
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"logs/{cluster_id}/node/")["Contents"]
    ]
    (stderr,) = [k for k in keys if k.endswith("bootstrap-actions/1/stderr.gz")]
    log = read_log(s3, f"s3://{bucket}/{stderr}")
    assert "Graviton (aarch64): c7g.2xlarge, m7g.xlarge" in log
    assert "no aarch64 wheel of tensorflow-cpu==2.21.0" in log
