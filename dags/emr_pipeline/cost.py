"""What a run's EMR cluster used, and an estimate of what that cost.

Usage comes from EMR itself: each instance's timeline (ListInstances) gives its hours, per
instance group, and DescribeCluster gives EMR's NormalizedInstanceHours. The estimate prices
those hours with a dated price table (EC2 on-demand plus EMR's uplift, per region): the one
shipped beside this module, or a deployment's own (`price_table_uri`). A price that the table
lacks gives no estimate (`estimate_usd: null`, with the reason in `notes`), never an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from emr_pipeline.idempotency import check_run_cluster
from emr_pipeline.price_table import SPOT_LABEL, PriceTableError, load_price_table, price_groups
from emr_pipeline.uris import split_s3_uri

COST_NAME = "cost.json"  # beside report.json in the run's output prefix
# EC2 (Linux) and EMR both bill per second with a one-minute minimum per instance: an
# instance that lived 20 s costs a minute. (Hours are counted from the instance's
# CreationDateTime; EC2 starts billing when the instance runs, a little later, so this errs
# on the high side by the instance's provisioning time.)
MIN_BILLED_SECONDS = 60
TERMINATED_STATES = frozenset({"TERMINATED", "TERMINATED_WITH_ERRORS"})


def billed_hours(start: datetime, end: datetime) -> float:
    """Hours from `start` to `end`, at least the one-minute minimum."""
    return max((end - start).total_seconds(), MIN_BILLED_SECONDS) / 3600


def instance_usage(instance: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One instance of ListInstances: its ids, launch and end time, and billed hours (an
    instance still running counts until `now`)."""
    timeline = instance.get("Status", {}).get("Timeline", {})
    launched, ended = timeline.get("CreationDateTime"), timeline.get("EndDateTime")
    return {
        "id": instance.get("Id"),
        "ec2_instance_id": instance.get("Ec2InstanceId"),
        "launched": launched.isoformat() if launched else None,
        "ended": ended.isoformat() if ended else None,
        "hours": billed_hours(launched, ended or now) if launched else 0.0,
    }


def group_usage(
    groups: list[dict[str, Any]], instances: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Per instance group (ListInstanceGroups): role, type, market, requested count, the
    instances seen (ListInstances) and their hours. An instance of a group the listing did not
    show gets a group of its own, so no hour goes uncounted."""
    usage: dict[str, dict[str, Any]] = {}
    for group in groups:
        usage[group["Id"]] = {
            "id": group["Id"],
            "name": group.get("Name"),
            "role": group.get("InstanceGroupType"),
            "instance_type": group.get("InstanceType"),
            "market": group.get("Market", "ON_DEMAND"),
            "requested": group.get("RequestedInstanceCount"),
            "instances": [],
        }
    for instance in instances:
        group_id = instance.get("InstanceGroupId") or instance.get("InstanceFleetId") or ""
        entry = usage.setdefault(
            group_id,
            {
                "id": group_id,
                "name": None,
                "role": None,
                "instance_type": instance.get("InstanceType"),
                "market": instance.get("Market", "ON_DEMAND"),
                "requested": None,
                "instances": [],
            },
        )
        entry["instances"].append(instance_usage(instance, now))
    for entry in usage.values():
        entry["instance_count"] = len(entry["instances"])
        entry["hours"] = sum(i["hours"] for i in entry["instances"])
    return list(usage.values())


def region_of(cluster: dict[str, Any], fallback: str) -> str:
    """The region in the cluster's ARN (arn:aws:elasticmapreduce:<region>:...), else
    `fallback` (the client's region)."""
    parts = (cluster.get("ClusterArn") or "").split(":")
    return parts[3] if len(parts) > 3 and parts[3] else fallback


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    pages = client.get_paginator(operation).paginate(**kwargs)
    return [item for page in pages for item in page.get(key, [])]


def run_cost(
    emr_client: Any,
    cluster_id: str,
    table: dict[str, Any] | None,
    now: datetime | None = None,
    table_error: str | None = None,
) -> dict[str, Any]:
    """The run's `cost` block (JSON-serialisable) for `cluster_id`: usage from EMR, priced
    with `table` (None: usage only, `table_error` says why)."""
    now = now or datetime.now(UTC)
    cluster = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    region = region_of(cluster, emr_client.meta.region_name)
    groups = group_usage(
        _paginate(emr_client, "list_instance_groups", "InstanceGroups", ClusterId=cluster_id),
        _paginate(emr_client, "list_instances", "Instances", ClusterId=cluster_id),
        now,
    )
    estimate, notes = price_groups(groups, table, region)
    if table_error:
        notes.insert(0, table_error)
    state = cluster["Status"]["State"]
    if state not in TERMINATED_STATES:
        notes.append(f"the cluster was {state}: running instances are counted until now")
    spot = any(g["market"] == "SPOT" for g in groups)
    return {
        "cluster_id": cluster_id,
        "region": region,
        "cluster_state": state,
        "normalized_instance_hours": cluster.get("NormalizedInstanceHours"),
        "instance_hours": sum(g["hours"] for g in groups),
        "billing": f"per second, {MIN_BILLED_SECONDS} s minimum per instance",
        "groups": groups,
        "estimate_usd": estimate,
        "estimate_is_upper_bound": spot and estimate is not None,
        "currency": "USD",
        "price_table": None
        if table is None
        else {
            "date": table.get("date"),
            "source": table.get("sources"),
            "uri": table.get("uri"),
        },
        "computed_at": now.isoformat(),
        "notes": notes,
    }


def wait_until_terminated(
    emr_client: Any,
    cluster_id: str,
    timeout_seconds: float,
    poll_seconds: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> str:
    """Poll DescribeCluster while the cluster is TERMINATING (once terminated, its instances
    have end times), for at most `timeout_seconds`; returns the last state seen. A cluster
    in any other state is not waited for: one the teardown could not end may run for hours."""
    deadline = clock() + timeout_seconds
    while True:
        state = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
        if state != "TERMINATING" or clock() >= deadline:
            return state
        sleep(poll_seconds)


def error_block(cluster_id: str, error: str) -> dict[str, Any]:
    """The block when the usage itself could not be read: the run still records that."""
    return {"cluster_id": cluster_id, "estimate_usd": None, "error": error}


def summary_fields(block: dict[str, Any] | None) -> dict[str, Any]:
    """The few numbers a summary (XCom, Asset event extra) carries."""
    block = block or {}
    return {
        "cost_estimate_usd": _rounded(block.get("estimate_usd"), 4),
        "cost_estimate_is_upper_bound": block.get("estimate_is_upper_bound"),
        "instance_hours": _rounded(block.get("instance_hours"), 4),
        "normalized_instance_hours": block.get("normalized_instance_hours"),
    }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def format_cost(block: dict[str, Any]) -> str:
    """Readable lines for the task log and the run's summary."""
    if block.get("error"):
        return f"cost of cluster {block.get('cluster_id')}: not recorded ({block['error']})"
    estimate = block.get("estimate_usd")
    if estimate is None:
        price = "no estimate"
    else:
        bound = " (an upper bound: spot)" if block.get("estimate_is_upper_bound") else ""
        price = f"estimated ${estimate:.4f}{bound}"
    lines = [
        f"cost of cluster {block['cluster_id']} ({block['region']}): {price}; "
        f"{block['instance_hours']:.4f} instance-hours, "
        f"{block['normalized_instance_hours']} normalized instance-hours (EMR)"
    ]
    for group in block.get("groups", []):
        each = group.get("usd_per_hour")
        rate = f" at ${each['ec2']} + ${each['emr']} EMR/h" if each else ""
        usd = group.get("estimate_usd")
        lines.append(
            f"  {group['role'] or group['id']}: {group['instance_count']} x "
            f"{group['instance_type']} {group['market']} (requested {group['requested']}), "
            f"{group['hours']:.4f} h{rate}"
            + ("" if usd is None else f" = ${usd:.4f}")
            + (f" [{group['priced_as']}]" if group.get("priced_as") == SPOT_LABEL else "")
        )
    table = block.get("price_table")
    if table:
        lines.append(f"  prices: {table['uri']} (as of {table['date']})")
    lines += [f"  note: {note}" for note in block.get("notes", [])]
    return "\n".join(lines)


def record_run_cost(
    emr_client: Any,
    s3_client: Any,
    cluster_id: str,
    *,
    tags: Mapping[str, str],
    cost_uri: str,
    report_uri: str,
    encryption: dict[str, str] | None,
    price_table_uri: str = "",
    say: Callable[[str], None] = print,
    wait_seconds: float = 300,
    poll_seconds: float = 5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """What the DAG's record_cost task does once the teardown ran: check that the cluster
    carries the run's `tags` (ForeignClusterError otherwise: another's cluster is neither
    waited for nor costed as this run's), wait (bounded) for it to end, build its cost block,
    log it, write it to `cost_uri` and add it to the run's report at `report_uri` when there
    is one. Never raises for want of a price or a usable table; an error reading EMR or S3
    propagates (the task turns it into a warning)."""
    check_run_cluster(emr_client, cluster_id, tags)
    state = wait_until_terminated(
        emr_client, cluster_id, wait_seconds, poll_seconds, sleep=sleep, clock=clock
    )
    if state not in TERMINATED_STATES:
        say(f"WARNING: cluster {cluster_id} is {state}: its instances count until now")
    table, table_error = None, None
    try:
        table = load_price_table(price_table_uri, s3_client)
    except PriceTableError as exc:
        table_error = f"{exc}: no estimate (deployment setting price_table_uri)"
        say(f"WARNING: {table_error}")
    block = run_cost(emr_client, cluster_id, table, table_error=table_error)
    say(format_cost(block))
    extra = encryption or {}
    bucket, key = split_s3_uri(cost_uri)
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=_json_bytes(block), ContentType="application/json", **extra
    )
    say(f"wrote {cost_uri}")
    add_to_report(s3_client, report_uri, block, extra, say)
    return block


def add_to_report(
    s3_client: Any,
    report_uri: str,
    block: dict[str, Any],
    encryption: dict[str, str],
    say: Callable[[str], None] = print,
) -> bool:
    """Adds `"cost": block` to the report at `report_uri` (read, modify, write); False when
    the run wrote no report (a failed step)."""
    bucket, key = split_s3_uri(report_uri)
    # Listed first, not read and caught: S3 answers a read of a missing key with 403, not
    # 404, to a role that may list the bucket only under some prefixes (this connection).
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not listed or listed[0]["Key"] != key:
        say(f"no report at {report_uri} (no step wrote one): the cost is in the cost file only")
        return False
    report = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    report["cost"] = block
    s3_client.put_object(
        Bucket=bucket,
        Key=key,
        Body=_json_bytes(report),
        ContentType="application/json",
        **encryption,
    )
    say(f"added the cost to {report_uri}")
    return True


def _json_bytes(document: dict[str, Any]) -> bytes:
    # As the validate job writes report.json (imagefeatures.storage), so a rewrite only adds.
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
