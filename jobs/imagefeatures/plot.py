"""The PCA scatter plot written next to the report."""

from __future__ import annotations

import io

import numpy as np


def pca_scatter_png(components: np.ndarray, labels: list[str], title: str) -> bytes:
    """PNG bytes of the first two components, one colour per label.

    `components` is (rows, k); with k = 1 the second axis is zero.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes or CI
    import matplotlib.pyplot as plt

    if components.ndim != 2 or components.shape[0] != len(labels):
        raise ValueError("components must be (rows, k) with one label per row")
    xs = components[:, 0] if components.size else np.array([])
    ys = components[:, 1] if components.shape[1] > 1 else np.zeros_like(xs)
    figure, axes = plt.subplots(figsize=(9, 7), dpi=110)
    unique = sorted(set(labels))
    colours = plt.get_cmap("tab20" if len(unique) > 10 else "tab10")
    label_array = np.asarray(labels, dtype=object)
    for index, label in enumerate(unique):
        mask = label_array == label
        axes.scatter(
            xs[mask], ys[mask], s=12, alpha=0.75, color=colours(index % colours.N), label=label
        )
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2" if components.shape[1] > 1 else "(k = 1)")
    axes.set_title(title)
    if len(unique) <= 30:
        axes.legend(fontsize=7, markerscale=1.5, loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
