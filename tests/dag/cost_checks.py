"""An end-to-end check of a run's cost block against what EMR itself reports.

`check_cost_block(cost, emr, cluster_id)` recomputes everything from the API (ListInstances'
timelines, DescribeCluster) and the price table the block names, without emr_pipeline.cost, so
a test of a real DAG run can call it on report.json's "cost" or cost.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SECOND = 1 / 3600  # hours
MIN_BILLED_SECONDS = 60  # EC2 and EMR: per second, one-minute minimum per instance


def _instances(emr: Any, cluster_id: str) -> list[dict[str, Any]]:
    pages = emr.get_paginator("list_instances").paginate(ClusterId=cluster_id)
    return [instance for page in pages for instance in page["Instances"]]


def _price_table(cost: dict[str, Any]) -> dict[str, Any]:
    uri = cost["price_table"]["uri"]
    assert not uri.startswith("s3://"), "this check reads local price tables only"
    return json.loads(Path(uri).read_text())


def check_cost_block(cost: dict[str, Any], emr_client: Any, cluster_id: str) -> None:
    """Assert that `cost` matches the terminated cluster `cluster_id`: every instance's hours
    within a second of its timeline (one-minute minimum), the groups' types and markets, EMR's
    NormalizedInstanceHours, and an estimate equal to hours x (ec2 + emr) from its table."""
    assert "error" not in cost, cost.get("error")
    assert cost["cluster_id"] == cluster_id
    cluster = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["Status"]["State"] in ("TERMINATED", "TERMINATED_WITH_ERRORS")
    assert cost["cluster_state"] == cluster["Status"]["State"]
    assert cost["normalized_instance_hours"] == cluster["NormalizedInstanceHours"]
    assert cost["normalized_instance_hours"] > 0
    assert cost["region"] == cluster["ClusterArn"].split(":")[3]

    recorded = {
        instance["id"]: (group, instance)
        for group in cost["groups"]
        for instance in group["instances"]
    }
    instances = _instances(emr_client, cluster_id)
    assert sorted(recorded) == sorted(i["Id"] for i in instances)
    table = _price_table(cost)["regions"].get(cost["region"], {})
    expected_total, expected_usd, unpriced = 0.0, 0.0, []
    for instance in instances:
        timeline = instance["Status"]["Timeline"]
        assert "EndDateTime" in timeline, f"{instance['Id']} has no end time"
        seconds = (timeline["EndDateTime"] - timeline["CreationDateTime"]).total_seconds()
        hours = max(seconds, MIN_BILLED_SECONDS) / 3600
        group, entry = recorded[instance["Id"]]
        assert entry["hours"] == pytest.approx(hours, abs=SECOND), instance["Id"]
        assert entry["ended"] is not None
        assert group["id"] == instance["InstanceGroupId"]
        assert group["instance_type"] == instance["InstanceType"]
        assert group["market"] == instance["Market"]
        expected_total += hours
        price = table.get(instance["InstanceType"])
        if price is None:
            unpriced.append(instance["InstanceType"])
        else:
            expected_usd += hours * (price["ec2"] + price["emr"])
    count = len(instances)
    assert cost["instance_hours"] == pytest.approx(expected_total, abs=count * SECOND)
    for group in cost["groups"]:
        assert group["instance_count"] == len(group["instances"])
        assert group["hours"] == pytest.approx(sum(i["hours"] for i in group["instances"]))
    if unpriced:  # no partial sums: no estimate, and a note says why
        assert cost["estimate_usd"] is None and cost["notes"], cost
        return
    # A second of every instance, at the dearest price in the table, is the tolerance.
    dearest = max((p["ec2"] + p["emr"] for p in table.values()), default=0)
    assert cost["estimate_usd"] == pytest.approx(expected_usd, abs=count * SECOND * dearest)
    spot = any(group["market"] == "SPOT" for group in cost["groups"])
    assert cost["estimate_is_upper_bound"] is spot
