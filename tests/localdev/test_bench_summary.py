"""`make bench`'s arithmetic and the environment its notebook stages run in."""

from __future__ import annotations

import pytest

from bench import emr_cost
from bench.run_bench import KERNEL_FLAGS, SMALL_N, cpu_description, notebook_env, summarize
from imagefeatures.model import ONEDNN_SWITCH


def stage(seconds: float, peak_mib: int = 1000, **detail) -> dict:
    return {"seconds": seconds, "peak_mib": peak_mib, **({"detail": detail} if detail else {})}


def sample_stages() -> dict:
    per_image = (4000 - SMALL_N) / 1000  # seconds per 1000 images, below
    return {
        "notebook featurize": stage(200.0),
        "notebook featurize (oneDNN on)": stage(125.0),
        "notebook pca": stage(40.0),
        "ours featurize (small, model exported)": stage(70.0),
        "ours featurize": {**stage(100.0, peak_mib=2000), "precision": "f32"},
        "ours pca": stage(18.0),
        "ours featurize (small)": stage(100.0 - per_image * 10),  # 100 images/s
        "spark floor": stage(9.0),
        "ours featurize bf16": {**stage(60.0), "precision": "bf16"},
        "ours featurize bf16 (small)": stage(60.0 - per_image * 5),  # 200 images/s
        "ours featurize tensorflow": stage(150.0),
        "ours featurize tensorflow (small)": stage(150.0 - per_image * 20),  # 50 images/s
        "limit": stage(60.0, build_seconds=6.0, work_seconds=80.0),  # 50 images/s
        "limit openvino": stage(40.0, build_seconds=9.0, work_seconds=32.0),  # 125 images/s
        "limit openvino bf16": stage(30.0, build_seconds=9.0, work_seconds=16.0),
        "ours featurize (20000)": stage(420.0, peak_mib=2200),
    }


def test_ratios_are_taken_within_one_run():
    stages = sample_stages()
    summary = summarize(stages, 4000, 20000)
    ratios = summary["ratios"]
    assert summary["bf16_ran_as"] == "bf16"
    assert ratios["featurize ours/notebook (target <= 0.35)"] == 0.5
    assert ratios["featurize steady-state ours f32/openvino f32 limit (target >= 0.9)"] == 0.8
    bf16 = "featurize steady-state ours bf16/openvino bf16 limit (target >= 0.9 where bf16 ran)"
    assert ratios[bf16] == 0.8
    assert ratios["featurize fixed cost: seconds for 200 images (target <= 8)"] == 62.0
    assert ratios["spark floor: seconds for a job without model (reference)"] == 9.0
    exported = "featurize fixed cost, model exported (first run of a model; reference)"
    assert ratios[exported] == 70.0
    assert ratios["pca ours/notebook (target <= 0.45)"] == 0.45
    assert ratios["featurize steady-state ours f32/tensorflow limit (reference)"] == 2
    assert ratios["featurize steady-state ours tensorflow/tensorflow limit (reference)"] == 1
    assert ratios["featurize ours/notebook with oneDNN on (reference, no target)"] == 0.8
    assert ratios["featurize peak memory 20000/4000 (target ~1)"] == 1.1
    assert summary["rates_images_per_s"]["limit openvino bf16 (decode + inference)"] == 250


def test_emr_cost_prices_the_steady_rates_per_vcpu():
    summary = summarize(sample_stages(), 4000, 20000)
    rows = {
        label: (per_vcpu, cost) for label, per_vcpu, cost in emr_cost.rows(summary, "m7i.xlarge", 2)
    }
    # 100 images/s on 2 vCPUs = 50 per vCPU; an m7i.xlarge's 4 make 200/s: 10,000 in 50 s,
    # at 0.2016 + 0.0504 USD an hour.
    assert rows["openvino f32"][0] == 50
    assert rows["openvino f32"][1] == pytest.approx(50 / 3600 * 0.252)
    assert rows["openvino bf16"][0] == 100 and rows["tensorflow f32"][0] == 25


def test_the_cpu_and_its_kernel_flags_are_recorded():
    cpu = cpu_description()
    assert cpu["model"]
    assert set(cpu["flags"]) <= set(KERNEL_FLAGS)


@pytest.mark.parametrize("user_value", [None, "0", "1"])
def test_notebook_stages_run_with_tensorflows_own_choice(monkeypatch, user_value):
    if user_value is None:
        monkeypatch.delenv(ONEDNN_SWITCH, raising=False)
    else:
        monkeypatch.setenv(ONEDNN_SWITCH, user_value)
    assert ONEDNN_SWITCH not in notebook_env()
    assert notebook_env(onednn="1")[ONEDNN_SWITCH] == "1"
