"""`make bench`'s arithmetic and the environment its notebook stages run in."""

from __future__ import annotations

import pytest

from bench.run_bench import SMALL_N, notebook_env, summarize
from imagefeatures.model import ONEDNN_SWITCH


def stage(seconds: float, peak_mib: int = 1000, **detail) -> dict:
    return {"seconds": seconds, "peak_mib": peak_mib, **({"detail": detail} if detail else {})}


def test_ratios_are_taken_within_one_run():
    stages = {
        "notebook featurize": stage(200.0),
        "notebook featurize (oneDNN on)": stage(125.0),
        "notebook pca": stage(40.0),
        "ours featurize": stage(100.0, peak_mib=2000),
        "ours pca": stage(18.0),
        "ours featurize (small)": stage(100.0 - (4000 - SMALL_N) / 50.0),
        "limit": stage(60.0, build_seconds=6.0, work_seconds=50.0),
        "ours featurize (20000)": stage(420.0, peak_mib=2200),
    }
    ratios = summarize(stages, 4000, 20000)["ratios"]
    assert ratios["featurize ours/notebook (target <= 0.65)"] == 0.5
    # ours: 50 images/s once started; the limit: 4000 / 50 s = 80 images/s
    assert ratios["featurize steady-state images/s ours/limit (target >= 0.9)"] == 0.625
    assert ratios["pca ours/notebook (target <= 0.5)"] == 0.45
    assert ratios["featurize ours/notebook with oneDNN on (reference, no target)"] == 0.8
    assert ratios["featurize peak memory 20000/4000 (target ~1)"] == 1.1


@pytest.mark.parametrize("user_value", [None, "0", "1"])
def test_notebook_stages_run_with_tensorflows_own_choice(monkeypatch, user_value):
    if user_value is None:
        monkeypatch.delenv(ONEDNN_SWITCH, raising=False)
    else:
        monkeypatch.setenv(ONEDNN_SWITCH, user_value)
    assert ONEDNN_SWITCH not in notebook_env()
    assert notebook_env(onednn="1")[ONEDNN_SWITCH] == "1"
