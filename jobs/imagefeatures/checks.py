"""The checks validate runs, as pure functions of facts read back from the outputs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class OutputFacts:
    """What validate reads back from one run's outputs (all plain Python values)."""

    listed: int  # image files under the input
    features: int
    rejects: int
    pca: int
    missing_paths: list[str]  # listed but in neither output
    unexpected_paths: list[str]  # in an output but not listed
    duplicate_paths: int  # rows beyond one per path across features + rejects
    feature_lengths: list[int]  # distinct lengths of the features arrays
    pca_lengths: list[int]
    expected_k: int | None  # from pca_summary.json
    bad_features: int  # rows with a null path/label/array or a null/NaN element
    bad_pca: int
    feature_labels: list[str] = field(default_factory=list)
    pca_labels: list[str] = field(default_factory=list)
    explained_variance: list[float] = field(default_factory=list)  # from pca_summary.json


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _sample(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def run_checks(facts: OutputFacts, feature_dim: int) -> list[CheckResult]:
    results = []

    def check(name: str, passed: bool, detail: str) -> None:
        results.append(CheckResult(name, bool(passed), detail))

    check(
        "features + rejects = input",
        facts.features + facts.rejects == facts.listed
        and not facts.missing_paths
        and not facts.unexpected_paths
        and facts.duplicate_paths == 0,
        f"{facts.features} features + {facts.rejects} rejects vs {facts.listed} input files; "
        f"{len(facts.missing_paths)} missing [{_sample(facts.missing_paths)}], "
        f"{len(facts.unexpected_paths)} unexpected [{_sample(facts.unexpected_paths)}], "
        f"{facts.duplicate_paths} duplicated",
    )
    check(
        "feature vector length",
        facts.feature_lengths in ([], [feature_dim]),
        f"expected {feature_dim}, found lengths {facts.feature_lengths}",
    )
    expected_k = [facts.expected_k] if facts.expected_k is not None else []
    check(
        "pca vector length",
        facts.expected_k is not None and facts.pca_lengths in ([], expected_k),
        f"expected k={facts.expected_k} (pca_summary.json), found lengths {facts.pca_lengths}",
    )
    check(
        "no nulls or NaN in features",
        facts.bad_features == 0,
        f"{facts.bad_features} feature rows with a null or NaN",
    )
    check(
        "no nulls or NaN in pca",
        facts.bad_pca == 0,
        f"{facts.bad_pca} pca rows with a null or NaN",
    )
    only_features = sorted(set(facts.feature_labels) - set(facts.pca_labels))
    only_pca = sorted(set(facts.pca_labels) - set(facts.feature_labels))
    check(
        "every label in features and pca",
        not only_features and not only_pca,
        f"{len(facts.feature_labels)} labels in features, {len(facts.pca_labels)} in pca; "
        f"only in features [{_sample(only_features)}], only in pca [{_sample(only_pca)}]",
    )
    check(
        "pca rows = feature rows",
        facts.pca == facts.features,
        f"{facts.pca} pca rows vs {facts.features} feature rows",
    )
    check("at least one image featurized", facts.features > 0, f"{facts.features} feature rows")
    check(
        "explained variance is finite",
        bool(facts.explained_variance) and all(math.isfinite(v) for v in facts.explained_variance),
        f"explained variance per component: {facts.explained_variance}",
    )
    return results


def failure_message(results: list[CheckResult]) -> str:
    failed = [r for r in results if not r.passed]
    return "; ".join(f"check failed: {r.name}: {r.detail}" for r in failed)
