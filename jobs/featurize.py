"""EMR step / spark-submit entrypoint: images -> <output>/features and <output>/rejects."""

import sys

from imagefeatures.entrypoint import run_job
from imagefeatures.featurize import parse_args, run_featurize
from imagefeatures.model_shipping import export_model_ahead


def main(argv: list[str] | None = None) -> int:
    return run_job(
        "featurize",
        parse_args,
        lambda spark, a, progress: run_featurize(
            spark,
            a.input,
            a.output,
            a.weights,
            a.batch_size,
            a.partitions,
            a.files_per_task,
            a.runtime,
            a.precision,
            a.model_cache,
            a.base,
            a.full_run_reason,
            progress,
        ),
        argv,
        before_spark=lambda a: export_model_ahead(a.weights, a.runtime, a.model_cache),
    )


if __name__ == "__main__":
    sys.exit(main())
