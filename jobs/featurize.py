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
        lambda spark, a, progress: run_featurize(
            spark,
            a.input,
            a.output,
            weights=a.weights,
            batch_size=a.batch_size,
            partitions=a.partitions,
            files_per_task=a.files_per_task,
            runtime=a.runtime,
            precision=a.precision,
            model_cache=a.model_cache,
            base=a.base,
            full_run_reason=a.full_run_reason,
            progress=progress,
            model_seals=a.model_seals,
            base_seal=a.base_seal,
        ),
        argv,
        before_spark=lambda a: export_model_ahead(a.weights, a.runtime, a.model_cache),
    )


if __name__ == "__main__":
    sys.exit(main())
