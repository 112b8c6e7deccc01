"""The run's guards, through the real DAG on the emulator: nothing lost, nothing polluted,
nothing paid for in vain.

Every refusal is a `dag.test()` run that must fail in `preflight` (or at trigger time, where
the form's JSON schema can say it), with a message naming the parameter or the deployment
setting, before any cluster exists and with every S3 object as it was: the input, an
earlier run's finished output, and whatever else the buckets hold. Refusals that only need
the parameters make no AWS call at all; the others only read.

The other side, a run that passes them: test_guarded_run_on_emulator.py.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import h5py
import numpy as np
import pendulum
import pytest

from emr_pipeline.plan import RUN_MARKER
from emr_pipeline.preflight import marker_body
from localdev.dag_run import LOCAL_DEPLOYMENT_ID, run_output_uri
from tests.dag.dag_shapes import put, read_json, states
from tests.dag.on_emulator.world import (
    DAG_ID,
    EARLIER_RUN,
    INPUT,
    OUTPUT,
    all_clusters,
    client,
    conf,
    snapshot,
    write_earlier_passed_run,
)
from tests.fault_keys import DAG_ACCESS_KEY

LOGICAL_DATE = pendulum.datetime(2025, 7, 1, tz="UTC")
RUN_ID = f"manual__{LOGICAL_DATE.isoformat()}"  # what dag.test() names a run at that date
READ_ONLY_OPERATIONS = {"ListBucket", "ListObjectsV2", "HeadBucket", "HeadObject", "GetObject"}


# --- refusals ----------------------------------------------------------------------------

# (conf overrides, deployment environment, expected message); no AWS call at all.
PARAMETER_REFUSALS = {
    "output inside input": (
        {"output_uri": INPUT + "features/"},
        {},
        r"input_uri \(s3://example-fruit-images/fruits-360/Training\) and output_uri .* overlap",
    ),
    "input inside output": (
        {"output_uri": "s3://example-fruit-images/fruits-360/"},
        {},
        r"input_uri .* and output_uri \(s3://example-fruit-images/fruits-360\) overlap",
    ),
    "the input written another way": (
        {"output_uri": "s3a://example-fruit-images//fruits-360/./Training/Apple/.."},
        {},
        r"input_uri .* and output_uri \(s3://example-fruit-images/fruits-360/Training\) overlap",
    ),
    "output at a bucket root holding the job code": (
        {"output_uri": "s3://example-fruit-features/"},
        {},
        r"output_uri \(s3://example-fruit-features\) and deployment setting artifacts_uri .* "
        "overlap",
    ),
    "job code inside the input": (
        {},
        {"FRUIT_EMR_ARTIFACTS_URI": INPUT + "code"},
        r"input_uri .* and deployment setting artifacts_uri .* overlap",
    ),
    "logs inside the output": (
        {},
        {"FRUIT_EMR_LOG_URI": OUTPUT + "emr-logs/"},
        r"output_uri .* and deployment setting log_uri .* overlap",
    ),
    "a float for an integer": ({"pca_k": 2.0}, {}, r"pca_k: expected an integer, got 2\.0"),
    "a trailing newline": ({"input_uri": INPUT + "\n"}, {}, r"input_uri: control characters"),
    "a trailing space": (
        {"core_instance_type": "m5.2xlarge "},
        {},
        r"core_instance_type: leading or trailing whitespace",
    ),
    "a colon in the input prefix": (
        {"input_uri": "s3://example-fruit-images/fruits-360:v2/"},
        {},
        r"input_uri: .* holds :",
    ),
    "a glob in the output prefix": (
        {"output_uri": "s3://example-fruit-features/runs-*/"},
        {},
        r"output_uri: .* holds \*",
    ),
    "EMR 6 (no Python 3.11)": (
        {"release_label": "emr-6.15.0"},
        {},
        r"release_label: emr-6\.15\.0's nodes have no Python 3\.11",
    ),
    "a misspelt parameter": ({"pca-k": 5}, {}, r"pca-k: not a parameter of this DAG; did you"),
    "an instance family the deployment does not allow": (
        {"core_instance_type": "p5.48xlarge"},
        {},
        r"core_instance_type: p5\.48xlarge .* deployment setting allowed_instance_families",
    ),
    "more core nodes than the cap": (
        {"core_instance_count": 21},
        {},
        r"core_instance_count: 21 .* cap of 20.* deployment setting max_core_instances "
        r"\(the Airflow Variable fruit_features_emr_max_core_instances",
    ),
    "an idle timeout over the cap": (
        {"idle_timeout_seconds": 20000},
        {"FRUIT_EMR_MAX_IDLE_TIMEOUT_SECONDS": "7200"},
        r"idle_timeout_seconds: 20000 .* cap of 7200",
    ),
    "not an instance type": (
        {"master_instance_type": "m5-xlarge"},
        {},
        r"master_instance_type: expected an EC2 instance type such as m5\.xlarge",
    ),
    "an instance type in capitals": (
        {"core_instance_type": "M5.2XLARGE"},
        {},
        r"core_instance_type: expected an EC2 instance type",
    ),
    "no components": ({"pca_k": 0}, {}, r"pca_k"),
    "more components than features": ({"pca_k": 1281}, {}, r"pca_k"),
    "a negative count": ({"core_instance_count": -1}, {}, r"core_instance_count"),
    "a malformed URI": ({"output_uri": "s3:/example-fruit-features/runs/"}, {}, r"output_uri"),
    "a poke interval under a second": (
        {"poke_interval_seconds": 0.5},
        {},
        r"poke_interval_seconds",
    ),
    "an unknown runtime": ({"runtime": "onnx"}, {}, r"runtime"),
    # Issue 31: what would be paid for and fail on the cluster.
    "a Graviton core type, even where the deployment allows its family": (
        {"core_instance_type": "m6g.2xlarge"},
        {"FRUIT_EMR_ALLOWED_INSTANCE_FAMILIES": "m5,m6g"},
        r"core_instance_type: m6g\.2xlarge is a Graviton \(arm64\) type, on which the bootstrap "
        r"cannot install",
    ),
    "a Graviton primary node, with no core nodes": (
        {"master_instance_type": "c7gn.xlarge", "core_instance_count": 0},
        {"FRUIT_EMR_ALLOWED_INSTANCE_FAMILIES": "m5,c7gn"},
        r"master_instance_type: c7gn\.xlarge is a Graviton \(arm64\) type",
    ),
    "more CPUs per task than a core node has": (
        {"task_cpus": 8, "core_instance_type": "m5.xlarge"},
        {},
        r"task_cpus: 8 is more than the 4 vCPUs of a core_instance_type m5\.xlarge node",
    ),
    "more partitions than Spark can count": ({"partitions": 10**30}, {}, r"partitions"),
    "bf16 on the TensorFlow runtime": (
        {"runtime": "tensorflow", "precision": "bf16"},
        {},
        r"precision bf16 runs only on the openvino runtime, not on tensorflow",
    ),
}


def refused_in_preflight(dag: Any, capfd: Any, message: str, **test_kwargs: Any) -> Any:
    """Run the DAG; assert it stopped at preflight (or at trigger) with `message`."""
    from airflow.sdk.exceptions import ParamValidationError

    try:
        dag_run = dag.test(**test_kwargs)
    except ParamValidationError as exc:  # the trigger form's JSON schema refused the run
        assert re.search(message, str(exc)), exc
        return None
    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["preflight"] == "failed", ran
    assert ran["create_cluster"] == "upstream_failed", ran
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert re.search(message, log), log[-3000:]
    return dag_run


@pytest.mark.parametrize("case", PARAMETER_REFUSALS, ids=list(PARAMETER_REFUSALS))
def test_a_bad_parameter_is_refused_before_any_aws_call(dag, world, monkeypatch, capfd, case):
    overrides, environment, message = PARAMETER_REFUSALS[case]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    s3 = client(world.endpoint_url, "s3")
    earlier = write_earlier_passed_run(s3)
    before = snapshot(s3)

    refused_in_preflight(dag, capfd, message, run_conf=conf(**overrides))

    assert world.api_calls.by_key(DAG_ACCESS_KEY) == []
    assert all_clusters(world.endpoint_url) == []
    assert snapshot(s3) == before
    assert read_json(s3, earlier + "report.json")["status"] == "passed"


def _foreign_object(s3: Any) -> None:
    put(s3, run_output_uri(OUTPUT, RUN_ID) + "notes/budget.xlsx", b"not this DAG's")


def _another_runs_output(s3: Any) -> None:
    out = run_output_uri(OUTPUT, RUN_ID)
    put(s3, out + RUN_MARKER, json.dumps({"dag_id": DAG_ID, "run_id": EARLIER_RUN}))
    put(s3, out + "report.json", json.dumps({"status": "passed"}))


def _this_runs_finished_output(s3: Any) -> None:
    out = run_output_uri(OUTPUT, RUN_ID)
    put(s3, out + RUN_MARKER, json.dumps(marker_body(DAG_ID, RUN_ID, LOCAL_DEPLOYMENT_ID)))
    put(s3, out + "report.json", json.dumps({"status": "passed"}))


def _huge_image(s3: Any) -> None:
    put(s3, INPUT + "Kiwi/huge.jpg", b"\xff\xd8" + b"\x00" * 100_000)


def _another_models_weights(s3: Any) -> None:
    """An HDF5 weights file, but not MobileNetV2's: featurize would fail on the cluster."""
    content = io.BytesIO()
    with h5py.File(content, "w") as weights:
        weights["layers/dense/vars/0"] = np.zeros((3, 3), dtype=np.float32)
    put(s3, "s3://example-fruit-features/models/dense.weights.h5", content.getvalue())


def _this_runs_output_around_another_run(s3: Any) -> None:
    out = run_output_uri(OUTPUT, RUN_ID)
    put(s3, out + RUN_MARKER, json.dumps(marker_body(DAG_ID, RUN_ID, LOCAL_DEPLOYMENT_ID)))
    put(s3, out + "inner/" + RUN_MARKER, json.dumps({"dag_id": DAG_ID, "run_id": "nested"}))
    put(s3, out + "inner/report.json", json.dumps({"status": "passed"}))


# (set-up, conf overrides, deployment environment, expected message); reads only.
STATE_REFUSALS = {
    # Issue 31: a run folder inside another would be deleted by the outer run's rerun.
    "an output root inside another run's folder": (
        None,
        {"output_uri": run_output_uri(OUTPUT, EARLIER_RUN) + "nested/"},
        {},
        r"output_uri: .* lies inside the folder of another run "
        r"\(s3://example-fruit-features/runs/[^ ]+/, which holds its marker",
    ),
    "another run's folder inside this run's, overwrite on": (
        _this_runs_output_around_another_run,
        {"overwrite": True},
        {},
        r"output_uri: .* holds the folder of another run .*inner/_fruit_features_run\.json.* "
        "nothing was deleted",
    ),
    "weights that do not exist": (
        None,
        {"weights": "s3://example-fruit-features/models/missing.weights.h5"},
        {},
        r"weights: s3://example-fruit-features/models/missing\.weights\.h5 does not exist",
    ),
    "weights that are not a Keras weights file": (
        lambda s3: put(s3, "s3://example-fruit-features/models/page.weights.h5", b"<html>"),
        {"weights": "s3://example-fruit-features/models/page.weights.h5"},
        {},
        r"weights: s3://example-fruit-features/models/page\.weights\.h5 is not an HDF5 file",
    ),
    # Issue 31: an HDF5 file of another model passed preflight (only its signature was read).
    "weights of another model": (
        _another_models_weights,
        {"weights": "s3://example-fruit-features/models/dense.weights.h5"},
        {},
        r"weights: s3://example-fruit-features/models/dense\.weights\.h5 is not MobileNetV2's "
        r"weights: it holds 1 weight arrays of 9 values; the whole MobileNetV2 \(classifier "
        r"included\) has 262 of 3,538,984",
    ),
    "an image over the deployment's max_image_bytes": (
        _huge_image,
        {},
        {"FRUIT_EMR_MAX_IMAGE_BYTES": "100000"},
        r"input_uri: 1 images .* larger than 100000 bytes .*max_image_bytes.*Kiwi/huge\.jpg",
    ),
    "objects this DAG did not write, overwrite on": (
        _foreign_object,
        {"overwrite": True},
        {},
        r"output_uri: .* already holds 1 objects with no marker .* nothing was deleted",
    ),
    "another run's output, overwrite on": (
        _another_runs_output,
        {"overwrite": True},
        {},
        r"output_uri: .* already holds 2 objects with a marker of another run .*"
        "nothing was deleted",
    ),
    "this run's finished output, overwrite off": (
        _this_runs_finished_output,
        {},
        {},
        r"already holds this run's finished output .* overwrite=true",
    ),
}


@pytest.mark.parametrize("case", STATE_REFUSALS, ids=list(STATE_REFUSALS))
def test_what_s3_holds_is_checked_before_any_cluster_and_nothing_is_deleted(
    dag, world, monkeypatch, capfd, case
):
    set_up, overrides, environment, message = STATE_REFUSALS[case]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    s3 = client(world.endpoint_url, "s3")
    earlier = write_earlier_passed_run(s3)
    if set_up:
        set_up(s3)
    before = snapshot(s3)

    refused_in_preflight(
        dag, capfd, message, run_conf=conf(**overrides), logical_date=LOGICAL_DATE,
        run_after=LOGICAL_DATE,
    )  # fmt: skip

    operations = {call.operation for call in world.api_calls.by_key(DAG_ACCESS_KEY)}
    assert operations <= READ_ONLY_OPERATIONS, operations
    assert all_clusters(world.endpoint_url) == []
    assert snapshot(s3) == before
    assert read_json(s3, earlier + "report.json")["status"] == "passed"
