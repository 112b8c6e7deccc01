"""The price table a run's cost estimate uses: EC2 on-demand plus EMR's uplift, USD per hour,
per region and instance type, dated and with its sources. The one shipped beside this module
(emr_prices.json), or a deployment's own (`price_table_uri`: a local path or an s3:// URI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emr_pipeline.uris import split_s3_uri

SHIPPED_PRICE_TABLE = Path(__file__).with_name("emr_prices.json")
SPOT_LABEL = "spot, priced at on-demand: an upper bound"


class PriceTableError(ValueError):
    """The price table cannot be read or does not have the expected shape."""


def parse_price_table(text: str, uri: str) -> dict[str, Any]:
    """The table in `text` (JSON), checked: date, sources and, per region and instance type,
    non-negative `ec2` and `emr` USD per hour. `uri` is where it came from (for messages)."""
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
            ok = isinstance(price, dict) and all(
                isinstance(price.get(part), int | float) and price[part] >= 0
                for part in ("ec2", "emr")
            )
            if not ok:
                raise PriceTableError(
                    f"price table {uri}: {region} {instance_type} needs non-negative numbers "
                    f"'ec2' and 'emr' (USD per hour), got {price!r}"
                )
    return {**table, "uri": uri}


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
