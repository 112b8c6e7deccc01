"""A run's cost block (emr_pipeline.cost): the arithmetic on timelines, the one-minute minimum,
spot as an upper bound, prices the table lacks, a bad table; the shipped table. Real DAG runs on
the emulator check their cost blocks against EMR's own answers (tests.dag.cost_checks) in
on_emulator/test_dag_on_emulator.py and the fault suite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from emr_pipeline import cluster, cost, report

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TABLE = {
    "date": "2025",
    "sources": ["https://example.com/prices"],
    "uri": "test-table",
    "regions": {"us-east-1": {"m5.xlarge": {"ec2": 0.2, "emr": 0.05}}},
}


def instance(instance_id: str, group: str, start_s: float, end_s: float | None) -> dict:
    timeline = {"CreationDateTime": T0 + timedelta(seconds=start_s)}
    if end_s is not None:
        timeline["EndDateTime"] = T0 + timedelta(seconds=end_s)
    return {
        "Id": instance_id,
        "Ec2InstanceId": f"i-{instance_id}",
        "InstanceGroupId": group,
        "InstanceType": "m5.xlarge",
        "Market": "ON_DEMAND",
        "Status": {"Timeline": timeline},
    }


def group(group_id: str, role: str, market: str = "ON_DEMAND", type_: str = "m5.xlarge"):
    return {
        "Id": group_id,
        "Name": role.lower(),
        "InstanceGroupType": role,
        "InstanceType": type_,
        "Market": market,
        "RequestedInstanceCount": 1,
    }


# --- Arithmetic ------------------------------------------------------------------------------


def test_hours_come_from_each_instances_timeline_with_a_one_minute_minimum():
    assert cost.billed_hours(T0, T0 + timedelta(minutes=30)) == 0.5
    assert cost.billed_hours(T0, T0 + timedelta(seconds=20)) == 60 / 3600  # billed a minute
    groups = cost.group_usage(
        [group("g1", "MASTER"), group("g2", "CORE")],
        [instance("a", "g1", 0, 1800), instance("b", "g2", 0, 20), instance("c", "g2", 60, None)],
        now=T0 + timedelta(hours=1),
    )
    master, core = groups
    assert (master["instance_count"], master["hours"]) == (1, 0.5)
    # b: 20 s billed as 60; c: still running, counted until now (3540 s).
    assert core["instance_count"] == 2
    assert core["hours"] == pytest.approx((60 + 3540) / 3600)
    assert core["instances"][1]["ended"] is None


def test_an_instance_of_a_group_not_listed_is_still_counted():
    (orphan,) = cost.group_usage([], [instance("a", "g9", 0, 3600)], now=T0)
    assert (orphan["id"], orphan["instance_type"], orphan["hours"]) == ("g9", "m5.xlarge", 1.0)


def test_the_estimate_is_hours_times_ec2_plus_emr_and_spot_is_an_upper_bound():
    groups = cost.group_usage(
        [group("g1", "MASTER"), group("g2", "CORE", market="SPOT")],
        [instance("a", "g1", 0, 3600), instance("b", "g2", 0, 7200)],
        now=T0,
    )
    total, notes = cost.price_groups(groups, TABLE, "us-east-1")
    assert total == pytest.approx(3 * 0.25)
    master, core = groups
    assert (master["priced_as"], master["estimate_usd"]) == ("on-demand", 0.25)
    assert core["priced_as"] == cost.SPOT_LABEL and "upper bound" in core["priced_as"]
    assert notes == ["CORE ran on spot: its estimate is an upper bound"]


@pytest.mark.parametrize(
    ("region", "type_", "note"),
    [
        ("eu-west-3", "m5.xlarge", "no prices for region eu-west-3"),
        ("us-east-1", "x9.huge", "no price for x9.huge in us-east-1"),
    ],
)
def test_a_price_the_table_lacks_gives_no_estimate_and_says_why(region, type_, note):
    groups = cost.group_usage(
        [group("g1", "MASTER"), group("g2", "CORE", type_=type_)],
        [instance("a", "g1", 0, 3600)],
        now=T0,
    )
    total, notes = cost.price_groups(groups, TABLE, region)
    assert total is None  # never a partial sum that reads as the whole cost
    assert any(note in n for n in notes), notes


# --- Price tables ----------------------------------------------------------------------------


def test_the_shipped_table_prices_the_dags_default_instance_types():
    from emr_pipeline.options import RunOptions

    table = cost.load_price_table()
    assert table["date"] and table["sources"] and "cannot reach" in table["note"]
    prices = table["regions"]["us-east-1"]
    defaults = RunOptions
    assert {defaults.master_instance_type, defaults.core_instance_type} <= set(prices)
    assert prices["m5.2xlarge"] == {"ec2": 0.384, "emr": 0.096}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"date": "2025", "sources": ["x"]}', "no 'regions'"),
        ('{"sources": ["x"], "regions": {}}', "no 'date'"),
        (
            '{"date": "2025", "sources": ["x"], "regions": {"us-east-1": {"m5.xlarge": 0.2}}}',
            "needs non-negative numbers",
        ),
        (
            '{"date": "2025", "sources": ["x"], "regions": '
            '{"us-east-1": {"m5.xlarge": {"ec2": -1, "emr": 0}}}}',
            "needs non-negative numbers",
        ),
        # JSON's true is a Python int, and json.loads reads Infinity: neither is a price.
        (
            '{"date": "2025", "sources": ["x"], "regions": '
            '{"us-east-1": {"m5.xlarge": {"ec2": true, "emr": 0}}}}',
            "needs non-negative numbers",
        ),
        (
            '{"date": "2025", "sources": ["x"], "regions": '
            '{"us-east-1": {"m5.xlarge": {"ec2": 0.2, "emr": Infinity}}}}',
            "needs non-negative numbers",
        ),
    ],
)
def test_a_bad_table_is_refused_with_its_reason(tmp_path, content, message):
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(cost.PriceTableError, match=message):
        cost.load_price_table(str(path))


def test_a_table_is_read_from_s3_or_a_path(s3, tmp_path):
    body = json.dumps({k: v for k, v in TABLE.items() if k != "uri"})
    s3.create_bucket(Bucket="prices")
    s3.put_object(Bucket="prices", Key="emr.json", Body=body)
    assert cost.load_price_table("s3://prices/emr.json", s3)["uri"] == "s3://prices/emr.json"
    (tmp_path / "p.json").write_text(body)
    assert cost.load_price_table(str(tmp_path / "p.json"))["regions"] == TABLE["regions"]
    with pytest.raises(cost.PriceTableError, match="cannot be read"):
        cost.load_price_table("s3://prices/missing.json", s3)
    with pytest.raises(cost.PriceTableError, match="cannot be read"):
        cost.load_price_table(str(tmp_path / "missing.json"))


# --- Against moto: the block, cost.json and report.json ---------------------------------------

OUT = "s3://fruit-out/runs/run-1/"
TAGS = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
ENCRYPTION = {"ServerSideEncryption": "AES256"}


def start_cluster(emr, core_market: str = "ON_DEMAND", volumes: bool = True) -> str:
    """A cluster of the run, with the DAG's volumes (emr_pipeline.cluster) unless not
    `volumes` (EMR's defaults: a root volume of unknown size and type)."""
    data = {"EbsConfiguration": cluster.DATA_VOLUMES} if volumes else {}
    groups = [
        {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1, **data},
        {"InstanceRole": "CORE", "InstanceType": "m5.2xlarge", "InstanceCount": 2,
         "Market": core_market, **data},
    ]  # fmt: skip
    cluster_id = emr.run_job_flow(
        Name="fruit_features_emr-run-1",
        ReleaseLabel="emr-7.13.0",
        Instances={"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True},
        **(cluster.ROOT_VOLUME if volumes else {}),
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Tags=[{"Key": key, "Value": value} for key, value in TAGS.items()],
    )["JobFlowId"]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    return cluster_id


def record(emr, s3, cluster_id: str, price_table_uri: str = "", lines: list | None = None):
    return report.record_run_cost(
        emr,
        s3,
        cluster_id,
        tags=TAGS,
        cost_uri=OUT + "cost.json",
        report_uri=OUT + "report.json",
        encryption=ENCRYPTION,
        price_table_uri=price_table_uri,
        say=(lines if lines is not None else []).append,
        wait_seconds=0,
    )


def read(s3, key: str) -> dict:
    return json.loads(s3.get_object(Bucket="fruit-out", Key=key)["Body"].read())


def test_the_block_goes_to_cost_json_and_into_the_report_encrypted(emr, s3):
    s3.create_bucket(Bucket="fruit-out")
    s3.put_object(Bucket="fruit-out", Key="runs/run-1/report.json", Body=b'{"status": "passed"}')
    cluster_id = start_cluster(emr, core_market="SPOT")
    lines: list[str] = []

    block = record(emr, s3, cluster_id, lines=lines)

    assert read(s3, "runs/run-1/cost.json") == json.loads(json.dumps(block))
    assert read(s3, "runs/run-1/report.json") == {"status": "passed", "cost": block}
    for key in ("runs/run-1/cost.json", "runs/run-1/report.json"):
        assert s3.head_object(Bucket="fruit-out", Key=key)["ServerSideEncryption"] == "AES256"
    assert block["region"] == "us-east-1" and block["cluster_id"] == cluster_id
    roles = {g["role"]: g for g in block["groups"]}
    assert (roles["MASTER"]["instance_type"], roles["MASTER"]["instance_count"]) == (
        "m5.xlarge",
        1,
    )
    core = roles["CORE"]
    assert (core["market"], core["requested"], core["instance_count"]) == ("SPOT", 2, 2)
    # moto never ends instances (the emulator does): they count until now, at least a minute.
    assert block["instance_hours"] == pytest.approx(3 * 60 / 3600, abs=3 * 5 / 3600)
    assert block["instances_usd"] == pytest.approx(
        roles["MASTER"]["hours"] * 0.24 + core["hours"] * 0.48
    )
    # Plus the run's S3 requests (tests/dag/test_s3_request_cost.py): this run left only a
    # report, without the manifest's LIST or featurize's GET counts, so those are unknown.
    requests = block["s3_requests"]
    # Objects: report.json; this step: cost.json, costs/<cluster>.json and report.json again.
    assert (requests["list"], requests["get"], requests["put"]) == (None, None, 4)
    # Each instance's root (15 GB) and data (32 GB) gp3 volumes, at $0.08 per GB-month.
    assert block["ebs_usd"] == pytest.approx(block["instance_hours"] * 47 * 0.08 / 730)
    assert block["estimate_usd"] == pytest.approx(
        block["instances_usd"] + block["ebs_usd"] + requests["usd"]
    )
    # Spot priced at on-demand bounds the instances from above, but the S3 requests counted
    # are a lower bound: the sum is neither, and is not called a bound.
    assert block["estimate_is_upper_bound"] is False
    assert read(s3, f"runs/run-1/costs/{cluster_id}.json") == read(s3, "runs/run-1/cost.json")
    assert block["price_table"]["uri"].endswith("emr_prices.json")
    log = "\n".join(lines)
    assert f"cost of cluster {cluster_id} (us-east-1): estimated $" in log
    assert "(an upper bound" not in log and "[spot, priced at on-demand" in log
    assert "GB-h gp3 = $" in log


def test_spot_with_every_volume_priced_is_an_upper_bound_and_without_them_it_is_not(emr):
    table = cost.load_price_table()
    priced = cost.run_cost(emr, start_cluster(emr, core_market="SPOT"), table)
    assert priced["estimate_is_upper_bound"] is True
    assert priced["estimate_usd"] == pytest.approx(priced["instances_usd"] + priced["ebs_usd"])
    # EMR's default volumes: the API does not say the root volume's size or type.
    unknown = cost.run_cost(emr, start_cluster(emr, "SPOT", volumes=False), table)
    assert unknown["estimate_is_upper_bound"] is False
    assert "the root volume's size or type is unknown: it is not priced" in unknown["notes"]
    # A table without EBS prices (a deployment's older one) leaves the volumes out, and says so.
    older = {**table, "ebs": {}}
    without = cost.run_cost(emr, start_cluster(emr, core_market="SPOT"), older)
    assert without["estimate_is_upper_bound"] is False and without["ebs_usd"] == 0
    assert (
        "the price table has no EBS price for gp3 in us-east-1: those volumes are not priced"
        in without["notes"]
    )


def test_unknown_normalized_hours_read_as_unknown_not_none():
    block = {
        "cluster_id": "j-1", "region": "us-east-1", "estimate_usd": None,
        "instance_hours": 0.5, "normalized_instance_hours": None,
    }  # fmt: skip
    assert "0.5000 instance-hours, unknown normalized instance-hours (EMR)" in (
        cost.format_cost(block)
    )


def test_without_a_report_the_cost_is_written_on_its_own(emr, s3):
    s3.create_bucket(Bucket="fruit-out")
    lines: list[str] = []
    record(emr, s3, start_cluster(emr), lines=lines)
    assert read(s3, "runs/run-1/cost.json")["estimate_usd"] > 0
    assert any("no report at" in line for line in lines)
    listed = s3.list_objects_v2(Bucket="fruit-out")["Contents"]
    assert len(listed) == 2 and listed[0]["Key"] == "runs/run-1/cost.json"
    assert listed[1]["Key"].startswith("runs/run-1/costs/j-")


def test_a_bad_table_gives_no_estimate_and_a_clear_message_never_a_failure(emr, s3, tmp_path):
    s3.create_bucket(Bucket="fruit-out")
    bad = tmp_path / "prices.json"
    bad.write_text("{oops")
    lines: list[str] = []

    block = record(emr, s3, start_cluster(emr), price_table_uri=str(bad), lines=lines)

    assert block["estimate_usd"] is None and block["price_table"] is None
    assert block["instance_hours"] > 0 and block["groups"]  # the usage is still recorded
    assert f"price table {bad} is not JSON" in block["notes"][0]
    assert any(line.startswith("WARNING: price table") for line in lines)
    assert "no estimate" in cost.format_cost(block)


def test_the_report_summary_and_its_lines_carry_the_cost(emr, s3):
    s3.create_bucket(Bucket="fruit-out")
    block = record(emr, s3, start_cluster(emr))
    body = {"status": "passed", "images": 3, "cost": json.loads(json.dumps(block))}
    summary = report.summarize(body)
    assert summary["cost_estimate_usd"] == round(block["estimate_usd"], 4)
    assert summary["instance_hours"] == round(block["instance_hours"], 4)
    assert summary["normalized_instance_hours"] == block["normalized_instance_hours"]
    assert summary["cost_estimate_is_upper_bound"] is False
    assert "cost of cluster" in report.format_summary(body)
    # A report without a cost (an older run) still summarises.
    assert report.summarize({"status": "passed"})["cost_estimate_usd"] is None


def test_another_runs_cluster_is_neither_waited_for_nor_costed(emr, s3):
    from emr_pipeline.run_clusters import ForeignClusterError

    s3.create_bucket(Bucket="fruit-out")
    cluster_id = start_cluster(emr)
    emr.add_tags(ResourceId=cluster_id, Tags=[{"Key": "run_id", "Value": "someone-else"}])
    with pytest.raises(ForeignClusterError, match="is not this run's"):
        record(emr, s3, cluster_id)
    assert "Contents" not in s3.list_objects_v2(Bucket="fruit-out")


def test_an_error_block_is_summarised_as_such():
    block = cost.error_block("j-1", "AccessDenied")
    assert cost.format_cost(block) == "cost of cluster j-1: not recorded (AccessDenied)"
    assert cost.summary_fields(block)["cost_estimate_usd"] is None


@pytest.mark.parametrize(
    ("states", "calls", "final"),
    [
        (["TERMINATING"] * 20, 10, "TERMINATING"),  # bounded
        (["TERMINATING", "TERMINATING", "TERMINATED"], 3, "TERMINATED"),
        (["RUNNING"], 1, "RUNNING"),  # the teardown failed: no use waiting for hours
    ],
)
def test_the_wait_is_for_a_terminating_cluster_and_bounded(states, calls, final):
    answers = iter(states)
    asked = []

    class Emr:
        def describe_cluster(self, ClusterId):  # noqa: N803 - boto3's spelling
            asked.append(ClusterId)
            return {"Cluster": {"Status": {"State": next(answers)}}}

    clock = iter(range(100))
    state = cost.wait_until_terminated(
        Emr(), "j-1", 10, 5, sleep=lambda _: None, clock=lambda: next(clock)
    )
    assert (state, len(asked)) == (final, calls)
