"""Mergeable moments: the covariance of the whole from partial blocks, as NumPy computes it."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pyarrow as pa
import pytest

from imagefeatures import moments
from imagefeatures.moments import Moments, merge_optional


def blocks(rows: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(rows, np.cumsum(sizes)[:-1])


def test_merged_blocks_give_numpys_covariance():
    rows = np.random.default_rng(1).normal(size=(50, 6))
    parts = [Moments.of_rows(block) for block in blocks(rows, [1, 20, 4, 25])]
    merged = reduce(merge_optional, [None, *parts, None])
    assert merged.count == 50
    np.testing.assert_allclose(merged.mean, rows.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(merged.covariance(), np.cov(rows, rowvar=False), atol=1e-12)


def test_a_large_offset_does_not_cancel_the_variance():
    # Sum-of-squares formulas lose every digit here; the pairwise update keeps them.
    rows = 1e8 + np.random.default_rng(2).normal(scale=1e-2, size=(40, 3))
    merged = reduce(merge_optional, [Moments.of_rows(b) for b in blocks(rows, [10, 10, 20])])
    np.testing.assert_allclose(merged.covariance(), np.cov(rows, rowvar=False), rtol=1e-4)


def test_float32_rows_are_summed_in_float64():
    rows = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    moments = Moments.of_rows(rows)
    assert moments.m2.dtype == np.float64
    np.testing.assert_allclose(
        moments.covariance(), np.cov(rows.astype(np.float64), rowvar=False), atol=1e-12
    )


def test_record_round_trip():
    moments = Moments.of_rows(np.arange(12.0).reshape(4, 3) ** 2)
    back = Moments.from_record(**moments.to_record())
    assert back.count == 4
    np.testing.assert_array_equal(back.mean, moments.mean)
    np.testing.assert_array_equal(back.m2, moments.m2)


def test_vectors_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths: 3 and 2"):
        Moments.of_rows(np.ones((2, 3))).merge(Moments.of_rows(np.ones((2, 2))))


def test_one_row_has_no_covariance():
    with pytest.raises(ValueError, match="at least 2 rows, got 1"):
        Moments.of_rows(np.ones((1, 3))).covariance()


def _list_batch(rows: np.ndarray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([list(map(float, row)) for row in rows], pa.list_(pa.float32()))], ["features"]
    )


def test_a_partitions_small_arrow_batches_give_numpys_covariance(monkeypatch):
    # Blocks of 7 rows across batches of 3, 5, 1...: the moments do not depend on the cut.
    monkeypatch.setattr(moments, "MOMENT_BLOCK_ROWS", 7)
    rows = np.random.default_rng(4).normal(size=(40, 5)).astype(np.float32)
    batches = [_list_batch(block) for block in blocks(rows, [3, 5, 1, 0, 12, 19])]
    (record,) = [batch.to_pylist()[0] for batch in moments.partition_moments(iter(batches))]
    merged = Moments.from_record(**record)
    assert merged.count == 40
    np.testing.assert_allclose(
        merged.covariance(), np.cov(rows.astype(np.float64), rowvar=False), atol=1e-6
    )


@pytest.mark.parametrize("block_rows", [2, 2048])  # the odd batch in the block, or after it
def test_a_partitions_vectors_of_different_lengths_are_refused(monkeypatch, block_rows):
    monkeypatch.setattr(moments, "MOMENT_BLOCK_ROWS", block_rows)
    batches = [_list_batch(np.ones((2, 3))), _list_batch(np.ones((1, 2)))]
    with pytest.raises(ValueError, match="different lengths: 2 and 3"):
        list(moments.partition_moments(iter(batches)))
