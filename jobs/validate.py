"""EMR step / spark-submit entrypoint: check a run's outputs, write report.json and pca.png."""

import sys

from imagefeatures.entrypoint import run_job
from imagefeatures.validate import parse_args, run_validate


def main(argv: list[str] | None = None) -> int:
    return run_job("validate", parse_args, run_validate, argv)


if __name__ == "__main__":
    sys.exit(main())
