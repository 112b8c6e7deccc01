"""An end-to-end check of a run's cost block against what EMR itself reports.

`check_cost_block(cost, emr, cluster_id)` recomputes everything from the API (ListInstances'
timelines, DescribeCluster) and the price table the block names, without emr_pipeline.cost, so
a test of a real DAG run can call it on report.json's "cost" or cost.json. Its S3 requests are
checked against the table's prices; `check_s3_requests(cost, s3, run_uri)` also re-derives
their counts from what the run left under its prefix.
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
    # Each instance's volumes: its group's EBS devices, and the root volume (gp3 where the
    # cluster names its IOPS), at the table's price per GB-month over 730 hours.
    ebs_prices = _price_table(cost).get("ebs", {}).get(cost["region"], {})
    volumes_of = {
        group["Id"]: [
            (device["VolumeSpecification"]["VolumeType"], device["VolumeSpecification"]["SizeInGB"])
            for device in group.get("EbsBlockDevices", [])
        ]
        for group in emr_client.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
    }
    root = cluster.get("EbsRootVolumeSize")
    root_type = "gp3" if cluster.get("EbsRootVolumeIops") else None
    expected_ebs, every_volume_priced = 0.0, bool(root and root_type)
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
        volumes = volumes_of.get(instance["InstanceGroupId"], [])
        for kind, size in volumes + ([(root_type, root)] if root and root_type else []):
            if kind in ebs_prices:
                expected_ebs += hours * size * ebs_prices[kind] / 730
            else:
                every_volume_priced = False
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
    s3_usd = _check_s3_prices(cost)
    if unpriced:  # no partial sums: no estimate, and a note says why
        assert cost["estimate_usd"] is None and cost["notes"], cost
        return
    # A second of every instance, at the dearest price in the table, is the tolerance.
    dearest = max((p["ec2"] + p["emr"] for p in table.values()), default=0)
    instances_usd = cost.get("instances_usd", cost["estimate_usd"])
    assert instances_usd == pytest.approx(expected_usd, abs=count * SECOND * dearest)
    assert cost["ebs_usd"] == pytest.approx(expected_ebs, rel=1e-3, abs=1e-9)
    assert cost["estimate_usd"] == pytest.approx(instances_usd + cost["ebs_usd"] + s3_usd)
    # An upper bound only where it is one: spot at its on-demand cap, every volume priced, and
    # no S3 requests (a lower bound) added in.
    spot = any(group["market"] == "SPOT" for group in cost["groups"])
    upper_bound = spot and every_volume_priced and "s3_requests" not in cost
    assert cost["estimate_is_upper_bound"] is upper_bound


KINDS = ("list", "get", "put")


def _check_s3_prices(cost: dict[str, Any]) -> float:
    """The S3 requests' totals are their parts' sums (None where a part is unknown), priced
    at the table's S3 prices for each part's region; returns the dollars (0 without them)."""
    s3 = cost.get("s3_requests")
    if s3 is None:
        return 0.0
    prices = _price_table(cost).get("s3", {})
    expected_usd = None
    for kind in KINDS:
        counts = [part[kind] for part in s3["parts"] if kind in part]
        assert s3[kind] == (None if None in counts else sum(counts)), kind
    for part in s3["parts"]:
        price = prices.get(part["region"])
        if price is None:
            assert part["usd"] is None and s3["complete"] is False
            continue
        usd = sum((part.get(kind) or 0) * price[f"{kind}_per_1000"] / 1000 for kind in KINDS)
        assert part["usd"] == pytest.approx(usd)
        expected_usd = (expected_usd or 0.0) + usd
    unknown = any(
        None in (part.get(kind) for kind in KINDS if kind in part) for part in s3["parts"]
    )
    assert bool(s3["unknown"]) is unknown
    if unknown:
        assert s3["complete"] is False
    if expected_usd is None:
        assert s3["usd"] is None
        return 0.0
    assert s3["usd"] == pytest.approx(expected_usd)
    return expected_usd


def check_s3_requests(cost: dict[str, Any], s3_client: Any, run_uri: str) -> None:
    """Assert that the block's S3 request counts are the run's own records: LIST from
    manifest.json, GET of images from featurize_summary.json, one PUT per object under the
    run's prefix when the cost was recorded (every object but cost.json, which it wrote)."""
    bucket, _, prefix = run_uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/"
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    listing, images, objects, own = cost["s3_requests"]["parts"]
    # The step's own cost files (cost.json, costs/<cluster>.json) are its own PUTs.
    written = [k for k in keys if k != prefix + "cost.json" and not k.startswith(prefix + "costs/")]
    assert objects["put"] == len(written)

    def record(name: str) -> dict[str, Any] | None:
        if prefix + name not in keys:
            return None
        return json.loads(s3_client.get_object(Bucket=bucket, Key=prefix + name)["Body"].read())

    manifest = record("manifest.json")
    if manifest is not None:
        assert listing["list"] == manifest["list_requests"] and listing["from"] == "manifest.json"
    summary = record("featurize_summary.json")
    if summary is not None and summary.get("s3_gets") is not None:
        assert images["get"] == summary["s3_gets"]
        assert images["from"] == "featurize_summary.json"
    records = ("manifest.json", "featurize_summary.json", "report.json", "_fruit_features_run.json")
    read = [n for n in records if prefix + n in keys]
    assert own["get"] == len(read) and own["list"] >= 1
    assert own["put"] == 2 + ("report.json" in read)  # cost.json, costs/<cluster>.json, report
