"""EMR step / spark-submit entrypoint: the run's manifest (or a local folder) -> <output>/features
and <output>/rejects."""

import sys

from imagefeatures.entrypoint import run_job
from imagefeatures.featurize import parse_args, run_featurize
from imagefeatures.model_shipping import export_model_ahead


def main(argv: list[str] | None = None) -> int:
    return run_job(
        "featurize",
        parse_args,
        run_featurize,
        argv,
        before_spark=lambda c: export_model_ahead(c.weights, c.runtime, c.model_cache),
    )


if __name__ == "__main__":
    sys.exit(main())
