"""What a run's EMR clusters used, and an estimate of what that cost.

Usage comes from EMR itself: each instance's timeline (ListInstances) per instance group, with
the group's EBS volumes and the root volume; EMR's NormalizedInstanceHours beside them. The
estimate prices those hours with a dated price table (EC2 on-demand plus EMR's uplift, per
region, and EBS per GB-month): the one shipped beside this module, or a deployment's own
(`price_table_uri`). A price the table lacks gives no estimate, and says why, never an error.

Every cluster of the run is costed (a rerun had others, found by the run's tags), each in
`<run>/costs/<cluster id>.json`. The run's S3 requests are derived from what the run recorded,
never guessed; a figure whose record is missing is unknown, and says why.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from emr_pipeline.cluster import ACTIVE_CLUSTER_STATES, ENDED_CLUSTER_STATES
from emr_pipeline.contract import contract
from emr_pipeline.plan import COSTS_FOLDER, RUN_MARKER
from emr_pipeline.run_clusters import check_run_cluster, find_run_clusters
from emr_pipeline.s3 import put_json, read_json_or_why
from emr_pipeline.uris import as_prefix, split_s3_uri

SHIPPED_PRICE_TABLE = Path(__file__).with_name("emr_prices.json")

SPOT_LABEL = "spot, priced at on-demand: an upper bound"

# S3 Standard request prices, USD per 1,000 requests: LIST (and PUT, COPY, POST) and GET.
S3_REQUEST_PRICES = ("list_per_1000", "put_per_1000", "get_per_1000")

# EBS bills a GB-month prorated by the second; AWS converts with 730 hours a month.
HOURS_PER_MONTH = 730


class PriceTableError(ValueError):
    """The price table cannot be read or does not have the expected shape."""


def parse_price_table(text: str, uri: str) -> dict[str, Any]:
    """The table in `text` (JSON), checked: date, sources, per region and instance type
    `ec2` and `emr` USD per hour, and per region (optional `s3`) S3's request prices; every
    price a finite, non-negative number. `uri` is where it came from (for messages)."""
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise PriceTableError(f"price table {uri} is not JSON: {exc}") from exc
    if not isinstance(table, dict) or not isinstance(table.get("regions"), dict):
        raise PriceTableError(f"price table {uri} has no 'regions' object")
    for name in ("date", "sources"):
        if not table.get(name):
            raise PriceTableError(f"price table {uri} has no '{name}'")
    if table.get("currency", "USD") != "USD":
        raise PriceTableError(f"price table {uri}: currency must be USD")
    for region, prices in table["regions"].items():
        if not isinstance(prices, dict):
            raise PriceTableError(f"price table {uri}: region {region} is not an object")
        for instance_type, price in prices.items():
            if not _has_prices(price, ("ec2", "emr")):
                raise PriceTableError(
                    f"price table {uri}: {region} {instance_type} needs non-negative numbers "
                    f"'ec2' and 'emr' (USD per hour), got {price!r}"
                )
    # Optional: a deployment's older table without S3 prices still prices the instances.
    _check_optional_section(
        table, uri, "s3", lambda prices: _has_prices(prices, S3_REQUEST_PRICES),
        f"non-negative numbers {', '.join(repr(p) for p in S3_REQUEST_PRICES)} (USD per 1,000 "
        "requests)",
    )  # fmt: skip
    # Optional too: without it, the estimate leaves the nodes' volumes out and says so.
    _check_optional_section(
        table, uri, "ebs",
        lambda prices: isinstance(prices, dict) and all(map(_is_price, prices.values())),
        "a non-negative number (USD per GB-month) per volume type",
    )  # fmt: skip
    return {**table, "uri": uri}


def _check_optional_section(
    table: dict[str, Any], uri: str, name: str, valid: Callable[[Any], bool], needs: str
) -> None:
    """PriceTableError unless the table's section `name` (when there is one) holds valid
    prices for each region."""
    section = table.get(name, {})
    if not isinstance(section, dict):
        raise PriceTableError(f"price table {uri}: '{name}' is not an object of regions")
    for region, prices in section.items():
        if not valid(prices):
            raise PriceTableError(
                f"price table {uri}: {name} {region} needs {needs}, got {prices!r}"
            )


def ebs_price_per_gb_hour(
    table: dict[str, Any] | None, region: str, volume_type: str
) -> float | None:
    """USD per GB-hour of a `volume_type` volume in `region`; None when the table has none."""
    price = ((table or {}).get("ebs") or {}).get(region, {}).get(volume_type)
    return None if price is None else price / HOURS_PER_MONTH


def _is_price(value: Any) -> bool:
    # JSON's true is a Python int and json.loads reads Infinity and NaN: none is a price.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _has_prices(entry: Any, names: tuple[str, ...]) -> bool:
    return isinstance(entry, dict) and all(_is_price(entry.get(name)) for name in names)


def s3_request_prices(table: dict[str, Any] | None, region: str) -> dict[str, float] | None:
    """USD per 1,000 LIST, PUT and GET requests to a bucket in `region`; None when the table
    has none for it."""
    prices = ((table or {}).get("s3") or {}).get(region)
    return None if prices is None else {name: prices[name] for name in S3_REQUEST_PRICES}


def load_price_table(uri: str = "", s3_client: Any = None) -> dict[str, Any]:
    """The shipped table when `uri` is empty, else a local path or an s3:// URI (read with
    `s3_client`). Raises PriceTableError with the reason when it cannot be used."""
    if not uri:
        return parse_price_table(SHIPPED_PRICE_TABLE.read_text(), str(SHIPPED_PRICE_TABLE))
    try:
        if uri.startswith("s3://"):
            if s3_client is None:
                raise PriceTableError(f"price table {uri}: no S3 client to read it")
            bucket, key = split_s3_uri(uri)
            text = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        else:
            text = Path(uri).read_text()
    except PriceTableError:
        raise
    except Exception as exc:  # missing file, AccessDenied, bad URI: all mean "no table"
        raise PriceTableError(f"price table {uri} cannot be read: {exc}") from exc
    return parse_price_table(text, uri)


def price_groups(
    groups: list[dict[str, Any]], table: dict[str, Any] | None, region: str
) -> tuple[float | None, list[str]]:
    """Adds each group's price and estimate; returns the total (None when any group's price
    is unknown: a partial sum would read as the whole cost) and notes on how it was priced."""
    notes: list[str] = []
    if table is None:
        return None, ["no price table: no estimate"]
    prices = table["regions"].get(region)
    if prices is None:
        notes.append(f"the price table has no prices for region {region}: no estimate")
    total: float | None = 0.0
    for group in groups:
        price = (prices or {}).get(group["instance_type"])
        group["usd_per_hour"] = price and {"ec2": price["ec2"], "emr": price["emr"]}
        group["priced_as"] = None
        group["estimate_usd"] = None
        if price is None:
            if prices is not None:
                notes.append(
                    f"the price table has no price for {group['instance_type']} in {region}: "
                    f"no estimate"
                )
            total = None
            continue
        group["estimate_usd"] = group["hours"] * (price["ec2"] + price["emr"])
        if group["market"] == "SPOT":
            # Spot without a BidPrice (how the DAG asks) is capped at the on-demand price;
            # EMR's uplift is the same whatever the market.
            group["priced_as"] = SPOT_LABEL
            note = f"{group['role'] or group['id']} ran on spot: its estimate is an upper bound"
            notes.append(note)
        else:
            group["priced_as"] = "on-demand"
        if total is not None:
            total += group["estimate_usd"]
    return total, notes


COST_NAME = "cost.json"  # beside report.json in the run's output prefix

# Clusters of the run are created after its marker is claimed; a margin for clock skew.
_CLOCK_SKEW = timedelta(minutes=10)

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
            "ebs_gb_per_instance": _volumes_gb(group.get("EbsBlockDevices", [])),
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
                "ebs_gb_per_instance": {},
                "instances": [],
            },
        )
        entry["instances"].append(instance_usage(instance, now))
    for entry in usage.values():
        entry["instance_count"] = len(entry["instances"])
        entry["hours"] = sum(i["hours"] for i in entry["instances"])
    return list(usage.values())


def _volumes_gb(devices: list[dict[str, Any]]) -> dict[str, int]:
    """{volume type: GB} of the EBS volumes ListInstanceGroups lists for each instance."""
    sizes: dict[str, int] = {}
    for device in devices:
        spec = device.get("VolumeSpecification", {})
        kind = spec.get("VolumeType", "unknown")
        sizes[kind] = sizes.get(kind, 0) + int(spec.get("SizeInGB", 0))
    return sizes


def root_volume(cluster: dict[str, Any]) -> dict[str, int]:
    """{volume type: GB} of each instance's root volume: gp3 when the cluster names its IOPS
    or throughput (which only gp3 has; the DAG sets both), else of a type the API does not
    say."""
    size = cluster.get("EbsRootVolumeSize")
    if not size:
        return {"unknown": 0}
    gp3 = cluster.get("EbsRootVolumeIops") or cluster.get("EbsRootVolumeThroughput")
    return {"gp3" if gp3 else "unknown": int(size)}


def price_volumes(
    groups: list[dict[str, Any]], root: dict[str, int], table: dict[str, Any] | None, region: str
) -> tuple[float, list[str]]:
    """Adds each group's EBS GB-hours and dollars (its volumes and the root volume, over its
    instances' hours); returns the dollars of the volumes priced, and notes on those that are
    not (a type whose price the table lacks, or a root volume of unknown size or type)."""
    usd, missing = 0.0, set()
    for group in groups:
        volumes = dict(group.get("ebs_gb_per_instance") or {})
        for kind, size in root.items():
            volumes[kind] = volumes.get(kind, 0) + size
        group["ebs_gb_hours"] = {kind: group["hours"] * size for kind, size in volumes.items()}
        group["ebs_usd"] = 0.0
        for kind, gb_hours in group["ebs_gb_hours"].items():
            price = None if kind == "unknown" else ebs_price_per_gb_hour(table, region, kind)
            if price is None:
                missing.add(kind)
                continue
            group["ebs_usd"] += gb_hours * price
        usd += group["ebs_usd"]
    notes = []
    if "unknown" in missing:
        missing.discard("unknown")
        notes.append("the root volume's size or type is unknown: it is not priced")
    notes += [
        f"the price table has no EBS price for {kind} in {region}: those volumes are not priced"
        for kind in sorted(missing)
    ]
    return usd, notes


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
    s3_parts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The run's `cost` block (JSON-serialisable) for `cluster_id`: usage from EMR, priced
    with `table` (None: usage only, `table_error` says why), and with `s3_parts` (from
    `s3_request_parts`) the run's S3 requests, priced and added to the estimate."""
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
    instances_usd = estimate
    ebs_usd, ebs_notes = price_volumes(groups, root_volume(cluster), table, region)
    notes += ebs_notes
    if estimate is not None:
        estimate += ebs_usd
    # Spot is priced at on-demand, its cap: an upper bound only if nothing is left out and no
    # lower bound (the S3 requests counted) is added in.
    upper_bound = spot and estimate is not None and not ebs_notes and s3_parts is None
    s3_block = None
    if s3_parts is not None:
        s3_block = price_s3_requests(s3_parts, table, region)
        notes += [f"S3 {reason}" for reason in s3_block["unknown"]]
        notes += s3_block.pop("price_notes")
        if estimate is not None and s3_block["usd"] is not None:
            estimate += s3_block["usd"]
        if estimate is not None and not s3_block["complete"]:
            notes.append("the estimate leaves out the S3 requests not counted or not priced")
    block = {
        "cluster_id": cluster_id,
        "region": region,
        "cluster_state": state,
        "normalized_instance_hours": cluster.get("NormalizedInstanceHours"),
        "instance_hours": sum(g["hours"] for g in groups),
        "billing": f"per second, {MIN_BILLED_SECONDS} s minimum per instance",
        "groups": groups,
        "instances_usd": instances_usd,
        "ebs_usd": ebs_usd,
        "estimate_usd": estimate,
        "estimate_is_upper_bound": upper_bound,
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
    if s3_block is not None:
        block["s3_requests"] = s3_block
    return block


REQUEST_KINDS = ("list", "get", "put")

# manifest.json's `source` for a manifest read from an S3 Inventory report
# (imagefeatures.manifest.FROM_INVENTORY; not imported: that module imports pyarrow).
FROM_INVENTORY = "inventory"

LOWER_BOUND = (
    "a lower bound: a multipart upload is several PUTs and an object written more than once "
    "(progress files, a retried task) several, each counted as one; the steps' reads of the "
    "run's own outputs (pca, validate) and EMRFS's HEAD and LIST requests are not counted"
)


@dataclass
class RunRecords:
    """What the cost step found under the run's prefix: one listing of it (its pages and the
    objects it holds) and the run's records of its requests, read (None: not there)."""

    run_uri: str
    list_pages: int = 0
    objects: int = 0
    gets: int = 0
    manifest: dict[str, Any] | None = None
    featurize_summary: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    has_report: bool = False
    marker: dict[str, Any] | None = None  # the run's marker: when the run was claimed
    cluster_costs: set[str] = field(default_factory=set)  # clusters with a costs/ file
    unreadable: dict[str, str] = field(default_factory=dict)  # file name: why


def read_run_records(s3_client: Any, run_uri: str, page_size: int | None = None) -> RunRecords:
    """Lists the run's prefix once (paged; `page_size` below S3's 1,000 only for tests) and
    reads the records that are there: manifest.json, featurize_summary.json, report.json.
    Listed first, not read and caught: S3 answers a read of a missing key with 403, not 404,
    to a role that may list the bucket only under some prefixes (this connection)."""
    bucket, key = split_s3_uri(run_uri)
    prefix = as_prefix(key)
    names = (contract.MANIFEST_SUMMARY, contract.FEATURIZE_SUMMARY, contract.REPORT, RUN_MARKER)
    records, found = RunRecords(run_uri=as_prefix(run_uri)), set()
    config = {"PageSize": page_size} if page_size else {}
    pages = s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig=config
    )
    for page in pages:  # counted as they come: a run's prefix may hold many part files
        records.list_pages += 1
        for obj in page.get("Contents", ()):
            name = obj["Key"][len(prefix) :]
            if name.startswith(COSTS_FOLDER):  # read only if that cluster's cost is needed
                records.cluster_costs.add(name[len(COSTS_FOLDER) :].removesuffix(".json"))
            if name == COST_NAME or name.startswith(COSTS_FOLDER):
                continue  # this step (re)writes them: its own PUTs
            records.objects += 1
            if name in names:
                found.add(name)
    read = {}
    for name in names:
        if name not in found:
            continue
        records.gets += 1
        try:
            body = s3_client.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            read[name] = document
        except (ValueError, s3_client.exceptions.ClientError) as exc:
            records.unreadable[name] = f"{name} cannot be read ({exc})"
    records.manifest = read.get(contract.MANIFEST_SUMMARY)
    records.featurize_summary = read.get(contract.FEATURIZE_SUMMARY)
    records.report = read.get(contract.REPORT)
    records.has_report = contract.REPORT in found
    records.marker = read.get(RUN_MARKER)
    return records


def _count(value: Any) -> int | None:
    """A count from a record: a non-negative integer, else None (unknown)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _why_missing(records: RunRecords, name: str, what: str) -> str:
    return records.unreadable.get(name) or f"no {name} under {records.run_uri} ({what})"


def s3_request_parts(records: RunRecords) -> list[dict[str, Any]]:
    """The run's S3 requests, part by part, from its records: each part has counts of some
    of `list`, `get`, `put` (None: unknown, and `unknown` says why), the record it comes
    from, and the region of the bucket it went to (None: the cluster's)."""
    report = records.report or {}
    manifest = records.manifest
    source = contract.MANIFEST_SUMMARY
    if manifest is None and isinstance(report.get("manifest"), dict):
        manifest, source = report["manifest"], contract.REPORT  # validate copied it
    listing: dict[str, Any] = {"what": "preflight's listing of the input", "from": source}
    if manifest is not None and manifest.get("source") == FROM_INVENTORY:
        # manifest.json counts the inventory's LIST and GET requests together: priced as
        # LIST, the dearer, this part errs high by at most $0.0046 per 1,000 (a few requests).
        listing["what"] = "preflight's reads of the S3 Inventory report (LIST and GET)"
    listing["region"] = (manifest or {}).get("region") or None
    listing["list"] = _count((manifest or {}).get("list_requests"))
    if listing["list"] is None:
        listing["unknown"] = "LIST: " + _why_missing(
            records, contract.MANIFEST_SUMMARY, "no manifest was published"
        )

    summary = records.featurize_summary
    gets = _count((summary or {}).get("s3_gets"))
    source = contract.FEATURIZE_SUMMARY
    if gets is None and _count(report.get("s3_gets")) is not None:
        gets, source = report["s3_gets"], contract.REPORT
    # Images are read from the input bucket: the manifest's region.
    images = {"what": "featurize's reads of images", "from": source, "region": listing["region"]}
    images["get"] = gets
    if gets is None:
        why = _why_missing(records, contract.FEATURIZE_SUMMARY, "featurize did not finish")
        if summary is not None:
            why = f"{contract.FEATURIZE_SUMMARY} has no s3_gets"
        images["unknown"] = f"GET: {why}, and report.json has no s3_gets"
    return [
        listing,
        images,
        {
            # Every object there was written at least once (a copied part file of a base run
            # too: COPY is priced as PUT); see LOWER_BOUND for what this misses.
            "what": "objects under the run's prefix, one PUT each",
            "from": "listing",
            "region": None,
            "put": records.objects,
        },
        {
            "what": "this step: its listing of the run's prefix, its reads, cost.json, "
            "its cluster's costs/ file" + (" and report.json" if records.has_report else ""),
            "from": "this step",
            "region": None,
            "list": records.list_pages,
            "get": records.gets,
            "put": 2 + records.has_report,
        },
    ]


def unknown_s3_parts(error: str) -> list[dict[str, Any]]:
    """The parts when the run's prefix could not be read at all: every figure unknown."""
    return [
        {
            "what": "the run's S3 requests",
            "from": None,
            "region": None,
            **dict.fromkeys(REQUEST_KINDS),
            "unknown": f"LIST, GET and PUT: the run's prefix could not be read ({error})",
        }
    ]


def price_s3_requests(
    parts: list[dict[str, Any]], table: dict[str, Any] | None, region: str
) -> dict[str, Any]:
    """The `s3_requests` block: totals per kind (None when a part's count is unknown: never a
    partial figure that reads as the whole), the parts with their dollars at their bucket's
    region (`region`, the cluster's, where a part names none), and the dollars of what was
    counted and priced (`usd`; `complete` says whether that is everything)."""
    totals: dict[str, int | None] = dict.fromkeys(REQUEST_KINDS, 0)
    used: dict[str, dict[str, float]] = {}
    unpriced: list[str] = []
    usd: float | None = None
    for part in parts:
        part["region"] = part.get("region") or region
        prices = s3_request_prices(table, part["region"])
        part["usd"] = None if prices is None else 0.0
        for kind in REQUEST_KINDS:
            if kind not in part:
                continue
            count = part[kind]
            total = totals[kind]
            totals[kind] = None if count is None or total is None else total + count
            if count is not None and prices is not None:
                part["usd"] += count * prices[f"{kind}_per_1000"] / 1000
        if prices is None:
            unpriced.append(part["region"])
        else:
            used[part["region"]] = prices
            usd = (usd or 0.0) + part["usd"]
    unknown = [part["unknown"] for part in parts if part.get("unknown")]
    price_notes = []
    if table is None:
        price_notes.append("no price table: the S3 requests are not priced")
    else:
        price_notes += [
            f"the price table has no S3 request prices for {name}: its requests are not priced"
            for name in sorted(set(unpriced))
        ]
    return {
        **totals,
        "usd": usd,
        "complete": not unknown and not unpriced,
        "unknown": unknown,
        "prices": used,
        "parts": parts,
        "is_lower_bound": True,
        "note": LOWER_BOUND,
        "price_notes": price_notes,  # moved into the block's notes by run_cost
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
    # The whole run's, earlier attempts' clusters included, where they were added up.
    estimate = block.get("run_estimate_usd", block.get("estimate_usd"))
    return {
        "cost_estimate_usd": _rounded(estimate, 4),
        "cost_estimate_is_upper_bound": block.get("estimate_is_upper_bound"),
        "instance_hours": _rounded(block.get("instance_hours"), 4),
        "normalized_instance_hours": block.get("normalized_instance_hours"),
        # S3 request dollars are fractions of a cent on small runs: more digits.
        "s3_requests_usd": _rounded((block.get("s3_requests") or {}).get("usd"), 6),
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
    normalized = block.get("normalized_instance_hours")
    normalized = "unknown" if normalized is None else normalized
    lines = [
        f"cost of cluster {block['cluster_id']} ({block['region']}): {price}; "
        f"{block['instance_hours']:.4f} instance-hours, "
        f"{normalized} normalized instance-hours (EMR)"
    ]
    for group in block.get("groups", []):
        each = group.get("usd_per_hour")
        rate = f" at ${each['ec2']} + ${each['emr']} EMR/h" if each else ""
        usd = group.get("estimate_usd")
        volumes = ", ".join(
            f"{gb_hours:.2f} GB-h {kind}"
            for kind, gb_hours in group.get("ebs_gb_hours", {}).items()
        )
        ebs = f"; EBS {volumes} = ${group.get('ebs_usd', 0):.4f}" if volumes else ""
        lines.append(
            f"  {group['role'] or group['id']}: {group['instance_count']} x "
            f"{group['instance_type']} {group['market']} (requested {group['requested']}), "
            f"{group['hours']:.4f} h{rate}"
            + ("" if usd is None else f" = ${usd:.4f}")
            + (f" [{group['priced_as']}]" if group.get("priced_as") == SPOT_LABEL else "")
            + ebs
        )
    if block.get("s3_requests"):
        lines.append(format_s3_requests(block["s3_requests"]))
    for earlier in block.get("earlier_clusters", []):
        usd = earlier.get("estimate_usd")
        lines.append(
            f"  an earlier attempt's cluster {earlier['cluster_id']}: "
            + ("no estimate" if usd is None else f"${usd:.4f}")
            + f" ({earlier['cost_uri']})"
        )
    if block.get("earlier_clusters"):
        total = block.get("run_estimate_usd")
        whole = "no estimate" if total is None else f"${total:.4f}"
        lines.append(f"  the whole run, {len(block['earlier_clusters']) + 1} clusters: {whole}")
    table = block.get("price_table")
    if table:
        lines.append(f"  prices: {table['uri']} (as of {table['date']})")
    lines += [f"  note: {note}" for note in block.get("notes", [])]
    return "\n".join(lines)


def format_s3_requests(s3: dict[str, Any]) -> str:
    """`  S3 requests: 3 LIST, 1,203 GET, 57 PUT = $0.000780 (prices ...)`; an unknown count
    reads "GET unknown" (the block's notes say why), never a number."""
    counts = ", ".join(
        f"{kind.upper()} unknown" if s3.get(kind) is None else f"{s3[kind]:,} {kind.upper()}"
        for kind in REQUEST_KINDS
    )
    usd = s3.get("usd")
    if usd is None:
        price = "not priced"
    else:
        price = f"${usd:.6f}" + ("" if s3.get("complete") else " for those counted and priced")
    per_region = "; ".join(
        f"{region} ${p['list_per_1000']} LIST, ${p['put_per_1000']} PUT, "
        f"${p['get_per_1000']} GET per 1,000"
        for region, p in sorted((s3.get("prices") or {}).items())
    )
    detail = f"prices: {per_region}; " if per_region else ""
    return f"  S3 requests: {counts} = {price} ({detail}a lower bound)"


def cost_run(
    emr_client: Any,
    s3_client: Any,
    cluster_id: str,
    *,
    tags: Mapping[str, str],
    cost_uri: str,
    encryption: dict[str, str] | None,
    price_table_uri: str = "",
    say: Callable[[str], None] = print,
    wait_seconds: float = 300,
    poll_seconds: float = 5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    list_page_size: int | None = None,
) -> tuple[dict[str, Any], RunRecords | None]:
    """What the DAG's record_cost task does once the teardown ran (then the report gets the
    cost: emr_pipeline.report.record_run_cost): check that the cluster
    carries the run's `tags` (ForeignClusterError otherwise: another's cluster is neither
    waited for nor costed as this run's), wait (bounded) for it to end, count the run's S3
    requests (one listing of the run's prefix, the folder of `cost_uri`; `list_page_size`
    only for tests), build its cost block, log it and write it to `cost_uri`. Returns the block
    and the run's records as read (None when they could not be). Never raises for want of a price, a
    usable table or a record of the run's requests; an error reading EMR, or writing the
    cost, propagates (the task turns it into a warning)."""
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
    records: RunRecords | None = None
    try:
        records = read_run_records(s3_client, cost_uri.rsplit("/", 1)[0], list_page_size)
        parts = s3_request_parts(records)
    except Exception as exc:  # the cluster's cost is worth recording without its S3 part
        say(f"WARNING: the run's S3 requests cannot be counted: {exc!r}")
        parts = unknown_s3_parts(repr(exc))
    block = run_cost(emr_client, cluster_id, table, table_error=table_error, s3_parts=parts)
    extra = encryption or {}
    run_uri = cost_uri.rsplit("/", 1)[0] + "/"
    if records is not None:
        earlier = cost_earlier_clusters(
            emr_client, s3_client, tags, cluster_id, records, table, table_error, extra
        )
        block["earlier_clusters"] = earlier
        totals = [block["estimate_usd"], *(e["estimate_usd"] for e in earlier)]
        block["run_estimate_usd"] = None if None in totals else sum(totals)
    else:
        block["notes"].append("the run's records cannot be read: earlier attempts not costed")
    say(format_cost(block))
    put_json(s3_client, cluster_cost_uri(run_uri, cluster_id), block, extra)
    put_json(s3_client, cost_uri, block, extra)
    say(f"wrote {cost_uri} and {cluster_cost_uri(run_uri, cluster_id)}")
    return block, records


def cluster_cost_uri(run_uri: str, cluster_id: str) -> str:
    """Where one cluster's cost is kept under the run's prefix."""
    return f"{as_prefix(run_uri)}{COSTS_FOLDER}{cluster_id}.json"


def cost_earlier_clusters(
    emr_client: Any,
    s3_client: Any,
    tags: Mapping[str, str],
    cluster_id: str,
    records: RunRecords,
    table: dict[str, Any] | None,
    table_error: str | None,
    encryption: dict[str, str],
) -> list[dict[str, Any]]:
    """The run's other clusters (earlier attempts: found by the run's tags, created since its
    marker was claimed), each costed once it has ended: its cost file read where an earlier
    record_cost wrote one for the ended cluster, else its cost computed from EMR and written.
    Returns a line per cluster: id, estimate, instance-hours, where its cost is."""
    claimed = (records.marker or {}).get("claimed_at")
    try:
        since = datetime.fromisoformat(claimed) - _CLOCK_SKEW
    except (TypeError, ValueError):
        return []  # no marker to bound the search: another run's clusters may share the tags
    clusters = find_run_clusters(
        emr_client, tags, ACTIVE_CLUSTER_STATES + ENDED_CLUSTER_STATES, created_after=since
    )
    earlier = []
    for other in (c for c in clusters if c != cluster_id):
        uri = cluster_cost_uri(records.run_uri, other)
        block = None
        if other in records.cluster_costs:  # an unreadable record is costed again from EMR
            block, _ = read_json_or_why(s3_client, *split_s3_uri(uri))
        if not block or block.get("cluster_state") not in TERMINATED_STATES:
            block = run_cost(emr_client, other, table, table_error=table_error)
            put_json(s3_client, uri, block, encryption)
        earlier.append(
            {
                "cluster_id": other,
                "estimate_usd": block.get("estimate_usd"),
                "instance_hours": block.get("instance_hours"),
                "cluster_state": block.get("cluster_state"),
                "cost_uri": uri,
            }
        )
    return earlier
