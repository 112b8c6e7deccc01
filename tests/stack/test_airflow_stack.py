"""The DAG in a running Airflow (`make airflow`), used the ways people use it.

In order, on one stack: the scheduler's own run once the DAG is unpaused; a manual run through
the REST API the UI's Trigger button calls, with other parameters; a refused bad parameter; and
the UI in headless Chromium: log in, fill in the Trigger form, see the run succeed.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import unquote

import pytest

from emr_pipeline.operators import build_params
from emr_pipeline.settings import DAG_ID, ParseTimeSettings
from emr_pipeline.watch import read_log_tail
from localdev.airflow_stack.processes import wait_until
from localdev.dag_run import cluster_states, emr_client, run_output_uri, upload_tree
from localdev.sample_data import generate_images
from tests.dag.dag_shapes import keys_under, read_json
from tests.stack.airflow_api import ApiError
from tests.stack.conftest import ARTIFACTS, chromium_path

RUN_TIMEOUT = 600


def assert_run_left_its_outputs(stack, run_id: str, images: int, pca_k: int) -> dict[str, Any]:
    """report.json and the parquet outputs under the run's own prefix; every cluster ended."""
    output_root = stack.config.airflow_env()["FRUIT_EMR_OUTPUT_URI"]
    # The run's deployment id, as its plan recorded it (made at the stack's first run and kept
    # in a Variable, unless the environment sets one).
    deployment_id = stack.api.xcom(DAG_ID, run_id, "preflight", key="deployment_id")
    prefix = run_output_uri(output_root, run_id, deployment_id)
    keys = keys_under(stack.s3, prefix)
    names = {key.removeprefix(prefix.split("/", 3)[3]).split("/")[0] for key in keys}
    assert {"report.json", "features", "pca"} <= names, keys
    report = read_json(stack.s3, prefix + "report.json")
    assert report["status"] == "passed"
    assert report["images"] == images
    assert report["pca"]["k"] == pca_k
    summary = stack.api.xcom(DAG_ID, run_id, "read_report")
    assert summary["pca_k"] == pca_k and len(summary["explained_variance"]) == pca_k
    states = cluster_states(stack.config.emulator_key_file)
    assert states and set(states.values()) == {"TERMINATED"}, states
    return report


def sample_count(stack) -> int:
    """Files seeded into the default input (the generated images and the two bad files)."""
    input_uri = stack.config.airflow_env()["FRUIT_EMR_INPUT_URI"]
    return len(keys_under(stack.s3, input_uri))


def test_unpausing_makes_the_scheduler_run_the_dag_once(airflow_stack):
    api = airflow_stack.api
    assert api.get(f"/dags/{DAG_ID}")["is_paused"] is True  # DAGS_ARE_PAUSED_AT_CREATION
    assert api.runs(DAG_ID) == []
    api.unpause(DAG_ID)

    def scheduled_runs() -> list[dict[str, Any]]:
        return [run for run in api.runs(DAG_ID) if run["run_type"] == "scheduled"]

    run = wait_until(scheduled_runs, 120, what="a scheduled run after unpausing")[0]
    seen: set[tuple[str, str | None]] = set()
    finished = api.wait_for_run(DAG_ID, run["dag_run_id"], RUN_TIMEOUT, seen)
    assert finished["state"] == "success", api.task_states(DAG_ID, run["dag_run_id"])
    # The default waits are deferrable: the steps were waited for in the triggerer.
    assert ("featurize.wait_for_step", "deferred") in seen, sorted(seen, key=str)
    # catchup=False: the latest interval only, and the next one lies in the future.
    assert [r["dag_run_id"] for r in scheduled_runs()] == [run["dag_run_id"]]
    assert run["dag_run_id"].startswith("scheduled__")
    assert_run_left_its_outputs(airflow_stack, run["dag_run_id"], sample_count(airflow_stack), 2)


def test_a_manual_run_through_the_rest_api_uses_its_parameters(airflow_stack, tmp_path):
    api = airflow_stack.api
    api.unpause(DAG_ID)
    other_input = "s3://demo-fruit-images/other-fruits/"
    images = generate_images(tmp_path / "images", 12, seed=7)
    assert upload_tree(airflow_stack.s3, tmp_path / "images", other_input) == len(images)

    run = api.trigger(DAG_ID, {"input_uri": other_input, "pca_k": 3})
    assert run["conf"] == {"input_uri": other_input, "pca_k": 3}
    finished = api.wait_for_run(DAG_ID, run["dag_run_id"], RUN_TIMEOUT)
    assert finished["state"] == "success", api.task_states(DAG_ID, run["dag_run_id"])
    report = assert_run_left_its_outputs(airflow_stack, run["dag_run_id"], len(images), 3)
    assert report["rejects"] == 0  # the other prefix holds only good images


def test_marking_a_deferred_wait_failed_cancels_its_step(airflow_stack):
    """A person marks the deferred featurize wait failed while its step runs: the triggerer
    calls the trigger's on_kill, which cancels the step on EMR; the run fails and its
    teardown ends the cluster."""
    api = airflow_stack.api
    api.unpause(DAG_ID)
    run_id = api.trigger(DAG_ID, {})["dag_run_id"]
    wait = "featurize.wait_for_step"

    emr = emr_client(airflow_stack.config.emulator_key_file)

    def run_cluster() -> dict[str, Any]:
        (cluster,) = [
            described
            for c in emr.list_clusters()["Clusters"]
            if {"Key": "run_id", "Value": run_id}
            in (described := emr.describe_cluster(ClusterId=c["Id"])["Cluster"])["Tags"]
        ]
        return cluster

    def featurize_step() -> dict[str, Any]:
        steps = emr.list_steps(ClusterId=run_cluster()["Id"])["Steps"]
        return next(step for step in steps if step["Name"] == "featurize")

    def running_trigger() -> bool:
        """The step runs, the wait deferred and its trigger taken by the triggerer, which
        starts it within its next loop: only a running trigger has an on_kill to call."""
        instance = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{wait}")
        trigger = instance.get("trigger") or {}
        return (
            instance["state"] == "deferred"
            and trigger.get("triggerer_id") is not None
            and featurize_step()["Status"]["State"] == "RUNNING"
        )

    wait_until(running_trigger, RUN_TIMEOUT, what=f"{wait} deferred to the triggerer")
    # While the step runs, the deferred wait's links are in the UI (its REST API).
    links = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{wait}/links")
    step_logs = links["extra_links"]["EMR Step Logs"]
    cluster_id, step_id = run_cluster()["Id"], featurize_step()["Id"]
    assert step_logs.endswith(f"/{cluster_id}/steps/{step_id}/"), links
    assert links["extra_links"]["EMR Cluster"].endswith(f"#/clusterDetails/{cluster_id}"), links
    time.sleep(3)
    api.set_task_state(DAG_ID, run_id, wait, "failed")

    finished = api.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
    ran = api.task_states(DAG_ID, run_id)
    assert finished["state"] == "failed", ran
    assert ran[wait] == "failed" and ran["terminate_cluster"] == "success", ran
    cluster, step = run_cluster(), featurize_step()
    assert step["Status"]["State"] == "CANCELLED", step["Status"]
    # The emulator says in the step's log what stopped it. The trigger's CancelSteps and the
    # teardown race (the scheduler may start terminate_cluster before the triggerer's next
    # loop runs on_kill): either may stop the process first; the trigger's log below shows
    # that its CancelSteps was sent and accepted either way.
    stderr = f"{cluster['LogUri']}{cluster['Id']}/steps/{step['Id']}/stderr.gz"
    log = wait_until(lambda: read_log_tail(airflow_stack.s3, stderr, 50), 60, what=stderr)
    assert (
        "step stopped by a CancelSteps request" in log
        or "step stopped by the cluster being TERMINATING" in log
    ), log
    assert cluster_states(airflow_stack.config.emulator_key_file)[cluster["Id"]] == "TERMINATED"
    task_logs = airflow_stack.config.airflow_home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    (trigger_log,) = (task_logs / f"task_id={wait}").glob("attempt=1.log.trigger.*.log")
    assert f"Cancelled EMR step {step['Id']}" in trigger_log.read_text()


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"pca_k": 0}, "pca_k"),
        ({"pca_k": "three"}, "pca_k"),
        ({"input_uri": "https://example.com/fruits/"}, "input_uri"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(airflow_stack, conf, named):
    api = airflow_stack.api
    before = len(api.runs(DAG_ID))
    with pytest.raises(ApiError) as refused:
        api.trigger(DAG_ID, conf)
    assert refused.value.status == 400
    assert f"param {named}" in refused.value.detail, refused.value.detail
    assert len(api.runs(DAG_ID)) == before  # nothing was queued


def expected_form(stack) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """{section: [(param name, {title, description, default, type})]} as the DAG defines it."""
    params = build_params(ParseTimeSettings.from_env(stack.config.airflow_env()))
    sections: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, param in params.items():
        schema = param.schema
        field = {
            "title": schema["title"],
            "description": param.description,
            "default": param.value,
            "boolean": schema.get("type") == "boolean",
            "choices": "enum" in schema,
        }
        sections.setdefault(schema["section"], []).append((name, field))
    return sections


def test_a_person_triggers_a_run_from_the_ui_form(airflow_stack):
    from playwright.sync_api import expect, sync_playwright

    api = airflow_stack.api
    api.unpause(DAG_ID)
    base = airflow_stack.config.api_url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # As root, and on a machine with no outside network: no sandbox, no background calls.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(30_000)
            page.goto(base + "/")
            expect(page).to_have_url(f"{base}/auth/login?next=%2F")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow_stack.api.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/")

            page.goto(f"{base}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger Dag").click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text(f"Trigger Dag - {DAG_ID}")).to_be_visible()

            for section, fields in expected_form(airflow_stack).items():
                dialog.get_by_role("button", name=section, exact=True).click()
                for name, field in fields:
                    control = dialog.locator(f'[name="element_{name}"]')
                    if field["choices"]:
                        # A drop-down (react-select): its box shows the choice, and a hidden
                        # input named like the other fields holds it.
                        box = dialog.locator(f'[id="element_{name}"]')
                        expect(box).to_be_visible()
                        expect(box).to_contain_text(str(field["default"]))
                    else:
                        expect(control).to_be_visible()
                    if field["boolean"]:
                        assert control.is_checked() == field["default"], name
                    else:
                        default = "" if field["default"] is None else str(field["default"])
                        expect(control).to_have_value(default)
                    # The label is the title, with a `*` where a value is required.
                    title = re.compile(rf"^\s*{re.escape(field['title'])}\s*\*?\s*$")
                    expect(dialog.locator("label").filter(has_text=title)).to_be_visible()
                    expect(dialog.get_by_text(field["description"], exact=True)).to_be_visible()
                if section == "Model and PCA":
                    dialog.locator('[name="element_pca_k"]').fill("4")
                    page.screenshot(path=ARTIFACTS / "trigger-form.png")

            dialog.get_by_role("button", name="Trigger", exact=True).click()
            page.wait_for_url(f"{base}/dags/{DAG_ID}/runs/manual__*")
            run_id = unquote(page.url.rsplit("/runs/", 1)[1])
            assert api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["conf"]["pca_k"] == 4

            page.goto(f"{base}/dags/{DAG_ID}/runs")
            row = page.get_by_role("row").filter(has_text=run_id)

            def row_says_success() -> bool:
                page.reload()
                row.wait_for()
                text = row.inner_text()
                assert "Failed" not in text, api.task_states(DAG_ID, run_id)
                return "Success" in text

            wait_until(row_says_success, RUN_TIMEOUT, 10, what=f"{run_id} shown as Success")
            page.screenshot(path=ARTIFACTS / "finished-run.png")
        finally:
            browser.close()
    assert_run_left_its_outputs(airflow_stack, run_id, sample_count(airflow_stack), 4)


def test_a_second_start_reuses_the_database_and_the_images(airflow_stack):
    """Ctrl-C, then `make airflow` again: the runs are still there, the images were not made
    again (only uploaded again: the emulator keeps its S3 in memory)."""
    config = airflow_stack.config
    runs = {run["dag_run_id"]: run["state"] for run in airflow_stack.api.runs(DAG_ID)}
    assert runs
    images_made = (config.images_cache / "images.count").stat().st_mtime_ns
    cluster_made = (config.postgres_dir / "data" / "PG_VERSION").stat().st_mtime_ns
    seeded = sample_count(airflow_stack)

    airflow_stack.stop()  # checks that every process it started is gone
    airflow_stack.start()

    airflow_stack.api.forget_token()
    assert {run["dag_run_id"]: run["state"] for run in airflow_stack.api.runs(DAG_ID)} == runs
    assert airflow_stack.api.get(f"/dags/{DAG_ID}")["is_paused"] is False
    assert (config.images_cache / "images.count").stat().st_mtime_ns == images_made
    assert (config.postgres_dir / "data" / "PG_VERSION").stat().st_mtime_ns == cluster_made
    assert sample_count(airflow_stack) == seeded
