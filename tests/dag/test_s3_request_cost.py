"""The run's S3 requests in its cost block (emr_pipeline.cost): LIST, GET and PUT counted from
the run's own records (manifest.json, featurize_summary.json, one listing of the run's prefix)
and priced from the table's S3 prices; unknown figures said to be unknown, never made up;
the table's S3 prices checked like the others."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emr_pipeline import cost, report
from tests.dag.cost_checks import _check_s3_prices, check_s3_requests
from tests.dag.test_cost import ENCRYPTION, OUT, TAGS, start_cluster

RUN = "runs/run-1/"
# S3 Standard in us-east-1, as the shipped table has them: USD per 1,000 requests.
LIST, GET, PUT = 0.005, 0.0004, 0.005


def put(s3: Any, name: str, document: Any = None, body: bytes | None = None) -> None:
    data = body if body is not None else json.dumps(document).encode()
    s3.put_object(Bucket="fruit-out", Key=RUN + name, Body=data)


def a_run(s3: Any, outputs: int, featurized: bool = True, list_requests: int = 3) -> None:
    """What a run leaves under its prefix: its marker, its manifest (preflight listed the
    input in `list_requests` pages), and `outputs` objects of the steps; with `featurized`,
    featurize's summary (1,200 images read) and validate's report."""
    s3.create_bucket(Bucket="fruit-out")
    put(s3, "_fruit_features_run.json", {"run_id": "run-1"})
    put(s3, "manifest.parquet", body=b"PAR1")
    manifest = {"source": "listing", "images": 1200, "list_requests": list_requests}
    put(s3, "manifest.json", {**manifest, "region": "us-east-1"})
    for index in range(outputs):
        put(s3, f"features/part-{index:05d}.parquet", body=b"PAR1")
    if featurized:
        put(s3, "featurize_summary.json", {"s3_gets": 1200, "listed": 1200})
        put(s3, "report.json", {"status": "passed", "s3_gets": 1200})


def record(emr: Any, s3: Any, lines: list[str], **kwargs: Any) -> dict[str, Any]:
    return report.record_run_cost(
        emr,
        s3,
        start_cluster(emr),
        tags=TAGS,
        cost_uri=OUT + "cost.json",
        report_uri=OUT + "report.json",
        encryption=ENCRYPTION,
        say=lines.append,
        wait_seconds=0,
        **kwargs,
    )


def read(s3: Any, name: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket="fruit-out", Key=RUN + name)["Body"].read())


def test_a_runs_requests_are_counted_from_its_records_and_priced_from_the_table(emr, s3):
    a_run(s3, outputs=50)  # + marker, manifest (2), summary, report: 55 objects
    lines: list[str] = []

    block = record(emr, s3, lines, list_page_size=10)

    requests = block["s3_requests"]
    # LIST: preflight's 3 + this step's listing of 55 objects, 10 a page (6).
    # GET: 1,200 images + this step's reads of manifest.json, the summary, the report and the
    # run's marker (when the run was claimed: its earlier clusters are looked for since).
    # PUT: 55 objects + this step's cost.json, costs/<cluster>.json and report.json.
    assert (requests["list"], requests["get"], requests["put"]) == (9, 1204, 58)
    usd = (9 * LIST + 1204 * GET + 58 * PUT) / 1000
    assert requests["usd"] == pytest.approx(usd, rel=1e-12)
    assert requests["complete"] is True and requests["unknown"] == []
    assert requests["is_lower_bound"] is True and "multipart" in requests["note"]
    assert requests["prices"] == {
        "us-east-1": {"list_per_1000": LIST, "put_per_1000": PUT, "get_per_1000": GET}
    }
    listing, images, objects, own = requests["parts"]
    assert (listing["from"], listing["list"]) == ("manifest.json", 3)
    assert (images["from"], images["get"]) == ("featurize_summary.json", 1200)
    assert (objects["put"], own["list"], own["get"], own["put"]) == (55, 6, 4, 3)
    # Added into the run's estimate, beside the instances' and the volumes' parts.
    assert block["estimate_usd"] == pytest.approx(block["instances_usd"] + block["ebs_usd"] + usd)
    assert _check_s3_prices(block) == pytest.approx(usd)
    check_s3_requests(block, s3, OUT)
    # In cost.json, in the report (which keeps what validate wrote), and in the log.
    assert read(s3, "cost.json") == json.loads(json.dumps(block))
    assert read(s3, "report.json") == {"status": "passed", "s3_gets": 1200, "cost": block}
    assert (
        "  S3 requests: 9 LIST, 1,204 GET, 58 PUT = $0.000817 (prices: us-east-1 $0.005 LIST, "
        "$0.005 PUT, $0.0004 GET per 1,000; a lower bound)"
    ) in "\n".join(lines)
    # The summary (XCom, Asset event) carries the dollars; the report's lines the counts.
    summary = report.summarize(read(s3, "report.json"))
    assert summary["s3_requests_usd"] == round(usd, 6)
    assert "1,204 GET" in report.format_summary(read(s3, "report.json"))


def test_a_retried_cost_step_counts_the_same_objects(emr, s3):
    a_run(s3, outputs=4)
    first = record(emr, s3, [])["s3_requests"]
    again = record(emr, s3, [])["s3_requests"]  # cost.json is there now: its own PUT still
    assert (again["list"], again["get"], again["put"]) == (first["list"], first["get"], 12)
    assert first["put"] == 12


def test_a_run_whose_featurize_failed_records_what_is_known_and_says_get_is_unknown(emr, s3):
    a_run(s3, outputs=2, featurized=False)  # marker, manifest (2), 2 part files: no summary
    lines: list[str] = []

    block = record(emr, s3, lines)

    requests = block["s3_requests"]
    assert (requests["list"], requests["get"], requests["put"]) == (4, None, 7)
    listing, images, objects, own = requests["parts"]
    # manifest.json and the marker read; cost.json and costs/<cluster>.json written.
    assert images["get"] is None and (own["get"], own["put"]) == (2, 2)
    (why,) = requests["unknown"]
    assert why.startswith("GET: no featurize_summary.json under s3://fruit-out/runs/run-1/")
    assert "featurize did not finish" in why
    # The known requests are priced; the estimate says what it leaves out.
    known = (4 * LIST + 2 * GET + 7 * PUT) / 1000
    assert requests["usd"] == pytest.approx(known) and requests["complete"] is False
    assert block["estimate_usd"] == pytest.approx(block["instances_usd"] + block["ebs_usd"] + known)
    assert f"S3 {why}" in block["notes"]
    assert any("leaves out the S3 requests" in note for note in block["notes"])
    # The rest of the cost still records, in cost.json (there is no report).
    assert block["groups"] and block["instances_usd"] > 0
    assert read(s3, "cost.json") == json.loads(json.dumps(block))
    assert any("no report at" in line for line in lines)
    text = cost.format_cost(block)
    assert "  S3 requests: 4 LIST, GET unknown, 7 PUT = $0.000056 for those counted" in text
    assert "None" not in text
    assert cost.summary_fields(block)["s3_requests_usd"] == round(known, 6)
    _check_s3_prices(block)
    check_s3_requests(block, s3, OUT)


def test_the_report_supplies_the_gets_when_the_summary_is_gone(emr, s3):
    a_run(s3, outputs=1)
    s3.delete_object(Bucket="fruit-out", Key=RUN + "featurize_summary.json")
    images = record(emr, s3, [])["s3_requests"]["parts"][1]
    assert (images["from"], images["get"]) == ("report.json", 1200)


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (None, "no manifest.json under s3://fruit-out/runs/run-1/ (no manifest was published)"),
        (b"{oops", "manifest.json cannot be read"),
        (json.dumps({"source": "listing", "list_requests": None}).encode(), "no manifest.json"),
    ],
)
def test_without_a_usable_manifest_list_is_unknown(emr, s3, manifest, reason):
    a_run(s3, outputs=1)
    if manifest is None:
        s3.delete_object(Bucket="fruit-out", Key=RUN + "manifest.json")
    else:
        put(s3, "manifest.json", body=manifest)
    requests = record(emr, s3, [])["s3_requests"]
    # The images' 1,200 and this step's reads (the marker, the summary, the report; none of
    # a manifest that is not there).
    assert requests["list"] is None and requests["get"] == 1200 + 3 + (manifest is not None)
    assert requests["unknown"][0].startswith("LIST: ") and reason in requests["unknown"][0]


def test_an_inventorys_requests_are_counted_as_list_the_dearer_price(emr, s3):
    a_run(s3, outputs=1)
    inventory = {"manifest": "s3://inv/x/manifest.json", "created": "2026-01-04T00:00:00+00:00"}
    summary = {"source": "inventory", "inventory": inventory, "list_requests": 5}
    put(s3, "manifest.json", summary)
    listing = record(emr, s3, [])["s3_requests"]["parts"][0]
    assert listing["list"] == 5 and "S3 Inventory report (LIST and GET)" in listing["what"]
    # manifest.json names no region: the cluster's prices it.
    assert listing["region"] == "us-east-1" and listing["usd"] == pytest.approx(5 * LIST / 1000)


def test_a_table_without_s3_prices_still_prices_the_instances(emr, s3, tmp_path):
    a_run(s3, outputs=1)
    shipped = cost.load_price_table()
    table = {k: v for k, v in shipped.items() if k not in ("s3", "uri")}
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(table))

    block = record(emr, s3, [], price_table_uri=str(path))

    requests = block["s3_requests"]
    assert (requests["list"], requests["get"], requests["put"]) == (4, 1204, 9)
    assert requests["usd"] is None and requests["complete"] is False
    assert block["estimate_usd"] == block["instances_usd"] + block["ebs_usd"] > 0
    assert any("no S3 request prices for us-east-1" in note for note in block["notes"])
    assert "= not priced (a lower bound)" in cost.format_cost(block)
    assert cost.summary_fields(block)["s3_requests_usd"] is None


class RefusedListing:
    """An S3 client whose paginated listing the bucket policy refuses (the rest works)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def get_paginator(self, name: str) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def test_a_prefix_that_cannot_be_listed_leaves_every_figure_unknown_and_the_rest_records(emr, s3):
    a_run(s3, outputs=1)
    lines: list[str] = []
    block = record(emr, RefusedListing(s3), lines)
    requests = block["s3_requests"]
    assert (requests["list"], requests["get"], requests["put"]) == (None, None, None)
    assert requests["usd"] == 0.0 and "AccessDenied" in requests["unknown"][0]
    assert block["estimate_usd"] == block["instances_usd"] + block["ebs_usd"] > 0
    assert "the run's records cannot be read: earlier attempts not costed" in block["notes"]
    assert any(
        line.startswith("WARNING: the run's S3 requests cannot be counted") for line in lines
    )
    assert read(s3, "report.json")["cost"] == json.loads(json.dumps(block))


# --- The table's S3 prices ---------------------------------------------------------------------


def test_the_shipped_table_has_s3_standards_request_prices():
    table = cost.load_price_table()
    assert cost.s3_request_prices(table, "us-east-1") == {
        "list_per_1000": LIST,
        "put_per_1000": PUT,
        "get_per_1000": GET,
    }
    assert cost.s3_request_prices(table, "ap-south-2") is None
    assert "https://aws.amazon.com/s3/pricing/" in table["sources"]


@pytest.mark.parametrize(
    "s3_prices",
    [
        '{"us-east-1": {"list_per_1000": true, "put_per_1000": 0.005, "get_per_1000": 0.0004}}',
        '{"us-east-1": {"list_per_1000": 0.005, "put_per_1000": 0.005, "get_per_1000": Infinity}}',
        '{"us-east-1": {"list_per_1000": 0.005, "put_per_1000": NaN, "get_per_1000": 0.0004}}',
        '{"us-east-1": {"list_per_1000": 0.005, "put_per_1000": -0.005, "get_per_1000": 0.0004}}',
        '{"us-east-1": {"list_per_1000": 0.005, "put_per_1000": 0.005}}',
        '{"us-east-1": {"list_per_1000": "0.005", "put_per_1000": 0.005, "get_per_1000": 0}}',
        '{"us-east-1": 0.005}',
    ],
)
def test_a_bad_s3_price_is_refused(tmp_path, s3_prices):
    path = tmp_path / "prices.json"
    path.write_text(f'{{"date": "2025", "sources": ["x"], "regions": {{}}, "s3": {s3_prices}}}')
    with pytest.raises(cost.PriceTableError, match="s3 us-east-1 needs non-negative"):
        cost.load_price_table(str(path))


def test_s3_prices_must_be_an_object_of_regions(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"date": "2025", "sources": ["x"], "regions": {}, "s3": [0.005]}')
    with pytest.raises(cost.PriceTableError, match="'s3' is not an object of regions"):
        cost.load_price_table(str(path))
