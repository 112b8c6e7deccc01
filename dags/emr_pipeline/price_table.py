"""The price table a run's cost estimate uses: EC2 on-demand plus EMR's uplift, USD per hour,
per region and instance type, S3's request prices per region (`s3`, USD per 1,000 requests)
and EBS volume prices per region and volume type (`ebs`, USD per GB-month), dated and with its
sources. The one shipped beside this module (emr_prices.json),
or a deployment's own (`price_table_uri`: a local path or an s3:// URI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from emr_pipeline.uris import split_s3_uri

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
    s3 = table.get("s3", {})
    if not isinstance(s3, dict):
        raise PriceTableError(f"price table {uri}: 's3' is not an object of regions")
    for region, prices in s3.items():
        if not _has_prices(prices, S3_REQUEST_PRICES):
            raise PriceTableError(
                f"price table {uri}: s3 {region} needs non-negative numbers "
                f"{', '.join(repr(p) for p in S3_REQUEST_PRICES)} (USD per 1,000 requests), "
                f"got {prices!r}"
            )
    # Optional too: without it, the estimate leaves the nodes' volumes out and says so.
    ebs = table.get("ebs", {})
    if not isinstance(ebs, dict):
        raise PriceTableError(f"price table {uri}: 'ebs' is not an object of regions")
    for region, prices in ebs.items():
        if not isinstance(prices, dict) or not all(_is_price(p) for p in prices.values()):
            raise PriceTableError(
                f"price table {uri}: ebs {region} needs a non-negative number (USD per "
                f"GB-month) per volume type, got {prices!r}"
            )
    return {**table, "uri": uri}


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
