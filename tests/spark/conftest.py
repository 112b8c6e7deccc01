"""One pipeline run (featurize -> pca -> validate) on tiny images, shared by the spark tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image_cases import bad_input_cases, jpeg_bytes, picture, write, write_good_images

GOOD_LABELS = ["Apple Red 1", "Banana", "Kiwi"]
GOOD_PER_LABEL = 8
# Largest difference allowed between two computations of one image's features (values up
# to about 6): TensorFlow's oneDNN kernels depend on the batch size, which moves features by
# round-off (up to 2e-5 measured); a wrong image or model moves them by 0.01 or more.
FEATURE_ROUND_OFF = 1e-4


@dataclass
class PipelineRun:
    images: Path
    output: Path
    featurize: dict
    pca: dict
    report: dict


def build_input_tree(root: Path) -> Path:
    write_good_images(root, GOOD_LABELS, GOOD_PER_LABEL)
    for relative, content, _ in bad_input_cases().values():
        write(root / relative, content)
    (root / "Banana" / "README.txt").write_text("not an image: never listed\n")
    # Names Hadoop's listing hid: a camera's `_DSC` file and a dot file are images too.
    for name, seed in (("_DSC0001.JPG", 5), (".IMG_0002.jpg", 6)):
        write(root / "Camera" / name, jpeg_bytes(picture(seed)))
    return root


@pytest.fixture(scope="session")
def pipeline_run(spark, tmp_path_factory) -> PipelineRun:
    from imagefeatures.featurize import FeaturizeConfig, run_featurize
    from imagefeatures.pca import PcaConfig, run_pca
    from imagefeatures.progress import JobProgress
    from imagefeatures.validate import ValidateConfig, run_validate

    base = tmp_path_factory.mktemp("pipeline")
    images = build_input_tree(base / "images")
    output = base / "out"
    # With its progress published every half second, as the DAG asks for (at its interval).
    progress_uri = str(output / "_progress" / "featurize.json")
    with JobProgress(spark, progress_uri, "featurize", seconds=0.5) as progress:
        config = FeaturizeConfig(
            input=str(images), output=str(output), weights="random", batch_size=8
        )
        featurize = run_featurize(spark, config, progress=progress)
    pca = run_pca(spark, PcaConfig(input=str(output / "features"), output=str(output), k=2))
    report = run_validate(spark, ValidateConfig(output=str(output)))
    return PipelineRun(images, output, featurize, pca, report)
