"""Row count, mean and centred cross-product matrix of feature vectors, mergeable.

Each Spark task folds its rows into one Moments with NumPy's BLAS; partial Moments merge
pairwise (Chan, Golub and LeVeque's update), so the covariance comes out of one pass over
the data without the cancellation of the textbook sum-of-squares formula.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Rows folded into moments at once (21 MB in float64 at 1280 features): Arrow batches are as
# small as the cluster's default for the model (32 rows), and each merge of partial moments
# costs a pass over a d x d matrix, so a batch each made the merges most of the job.
MOMENT_BLOCK_ROWS = 2048


@dataclass(frozen=True)
class Moments:
    count: int
    mean: np.ndarray  # (d,)
    m2: np.ndarray  # (d, d): sum over rows of (x - mean)(x - mean)^T

    @classmethod
    def of_rows(cls, rows: np.ndarray) -> Moments:
        """The moments of a non-empty (n, d) block of rows, in float64."""
        rows = np.asarray(rows, dtype=np.float64)
        mean = rows.mean(axis=0)
        centred = rows - mean
        return cls(len(rows), mean, centred.T @ centred)

    def merge(self, other: Moments) -> Moments:
        if self.mean.shape != other.mean.shape:
            raise ValueError(
                f"feature vectors of different lengths: {self.mean.size} and {other.mean.size}"
            )
        count = self.count + other.count
        delta = other.mean - self.mean
        return Moments(
            count,
            self.mean + delta * (other.count / count),
            self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / count),
        )

    def covariance(self) -> np.ndarray:
        """The unbiased covariance matrix (needs at least 2 rows)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 rows, got {self.count}")
        return self.m2 / (self.count - 1)

    def to_record(self) -> dict:
        """A row for Spark (arrays as raw float64 bytes: 13 MB for 1280 features)."""
        return {"count": self.count, "mean": self.mean.tobytes(), "m2": self.m2.tobytes()}

    @classmethod
    def from_record(cls, count: int, mean: bytes, m2: bytes) -> Moments:
        mean_array = np.frombuffer(mean, dtype=np.float64)
        size = mean_array.size
        return cls(count, mean_array, np.frombuffer(m2, dtype=np.float64).reshape(size, size))


def merge_optional(first: Moments | None, second: Moments | None) -> Moments | None:
    """Merge two partial moments; None stands for a part without rows."""
    if first is None:
        return second
    if second is None:
        return first
    return first.merge(second)


def moments_of_row(row: tuple) -> Moments:
    """The Moments of a (count, mean, m2) row of partition_moments' output."""
    return Moments.from_record(*row)


def partition_moments(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow function: one row of moments for the `features` arrays of a partition.

    Arrow's list column is flattened into an (n, d) array without a Python object per row;
    batches are gathered into blocks of MOMENT_BLOCK_ROWS rows before their moments are taken.
    """
    total, block, block_rows = None, [], 0
    for batch in batches:
        arrays = batch.column(0)
        if not len(arrays):
            continue
        if arrays.null_count:
            raise ValueError("the features column holds null vectors")
        lengths = pc.min_max(pc.list_value_length(arrays)).as_py()
        size = block[0].shape[1] if block else (total.mean.size if total else lengths["max"])
        if not lengths["min"] == lengths["max"] == size:
            shown = sorted({lengths["min"], lengths["max"], size})
            raise ValueError(f"feature vectors of different lengths: {shown[0]} and {shown[-1]}")
        block.append(arrays.flatten().to_numpy().reshape(len(arrays), size))
        block_rows += len(arrays)
        if block_rows >= MOMENT_BLOCK_ROWS:
            total = merge_optional(total, Moments.of_rows(np.concatenate(block)))
            block, block_rows = [], 0
    if block:
        total = merge_optional(total, Moments.of_rows(np.concatenate(block)))
    if total is not None:
        yield pa.RecordBatch.from_pylist([total.to_record()])
