"""Row count, mean and centred cross-product matrix of feature vectors, mergeable.

Each Spark task folds its rows into one Moments with NumPy's BLAS; partial Moments merge
pairwise (Chan, Golub and LeVeque's update), so the covariance comes out of one pass over
the data without the cancellation of the textbook sum-of-squares formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
