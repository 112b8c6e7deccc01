"""EMR step / spark-submit entrypoint: <output>/features -> <output>/pca and pca_model."""

import sys

from imagefeatures.entrypoint import run_job
from imagefeatures.pca import parse_args, run_pca


def main(argv: list[str] | None = None) -> int:
    return run_job("pca", parse_args, run_pca, argv)


if __name__ == "__main__":
    sys.exit(main())
