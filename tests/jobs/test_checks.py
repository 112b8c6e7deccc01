"""The validate job's checks, as pure functions."""

from __future__ import annotations

import dataclasses

from imagefeatures.checks import OutputFacts, failure_message, run_checks


def good_facts(**changes) -> OutputFacts:
    facts = OutputFacts(
        listed=10,
        features=9,
        rejects=1,
        pca=9,
        missing_paths=[],
        unexpected_paths=[],
        duplicate_paths=0,
        feature_lengths=[1280],
        pca_lengths=[2],
        expected_k=2,
        bad_features=0,
        bad_pca=0,
        feature_labels=["A", "B"],
        pca_labels=["A", "B"],
        explained_variance=[0.4, 0.2],
    )
    return dataclasses.replace(facts, **changes)


def failed(facts: OutputFacts) -> dict[str, str]:
    return {r.name: r.detail for r in run_checks(facts, 1280) if not r.passed}


def test_good_outputs_pass_every_check():
    assert failed(good_facts()) == {}


def test_lost_file_fails_with_the_numbers():
    problems = failed(good_facts(features=8, missing_paths=["s3://b/A/x.jpg"], pca=8))
    detail = problems["features + rejects = input"]
    assert "8 features + 1 rejects vs 10 input files" in detail
    assert "s3://b/A/x.jpg" in detail


def test_each_check_names_itself():
    cases = {
        "feature vector length": good_facts(feature_lengths=[1000, 1280]),
        "pca vector length": good_facts(pca_lengths=[3]),
        "no nulls or NaN in features": good_facts(bad_features=2),
        "no nulls or NaN in pca": good_facts(bad_pca=1),
        "every label in features and pca": good_facts(pca_labels=["A"]),
        "pca rows = feature rows": good_facts(pca=7),
        "features + rejects = input": good_facts(duplicate_paths=1),
        "explained variance is finite": good_facts(explained_variance=[float("nan"), 0.1]),
    }
    for name, facts in cases.items():
        assert name in failed(facts), name
    message = failure_message(run_checks(cases["pca rows = feature rows"], 1280))
    assert message == "check failed: pca rows = feature rows: 7 pca rows vs 9 feature rows"


def test_missing_pca_summary_fails_the_length_check():
    assert "pca vector length" in failed(good_facts(expected_k=None))
