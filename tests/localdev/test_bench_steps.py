"""`make bench` runs our jobs as the DAG's steps run on the emulator (bench.dag_steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.dag_steps import run_options, step_args, step_command, with_application
from localdev.local_spark import JOBS_DIR


def _confs(command: list[str]) -> dict[str, str]:
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "--conf"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_featurize_runs_the_dags_step_with_the_clusters_spark_defaults(tmp_path: Path):
    options = run_options(precision="bf16")
    local = {
        "--input": "/data/images",
        "--output": "/data/out",
        "--weights": "/data/w.weights.h5",
        "--model-cache": "/data/cache",
        "--progress": "/data/out/_progress/featurize.json",
    }
    command, env = step_command("featurize", options, tmp_path, local)
    assert not [arg for arg in command if "s3://" in arg]
    confs = _confs(command)
    # The cluster's spark-defaults for these parameters: one task per task_cpus cores, the
    # Arrow batch of batch_size, the model's threads, reused workers.
    assert confs["spark.task.cpus"] == str(options.task_cpus) == "1"
    assert confs["spark.sql.execution.arrow.maxRecordsPerBatch"] == str(options.batch_size)
    assert confs["spark.executorEnv.OMP_NUM_THREADS"] == "1"
    assert confs["spark.python.worker.reuse"] == "true"
    assert command[command.index("--py-files") + 1] == str(tmp_path / "imagefeatures.zip")
    assert (tmp_path / "imagefeatures.zip").is_file()
    # The step's own application arguments, its S3 locations local, the seals left out.
    entry = command.index(str(JOBS_DIR / "featurize.py"))
    application = command[entry + 1 :]
    dag_step = step_args("featurize", options)
    dag_flags = dag_step[dag_step.index("--output") :: 2]
    assert application[::2] == [f for f in dag_flags if f != "--model-seals"] + ["--input"]
    assert application[application.index("--precision") + 1] == "bf16"
    assert application[application.index("--weights") + 1] == "/data/w.weights.h5"
    assert env["KERAS_HOME"].startswith(str(tmp_path / "node"))


def test_a_step_location_the_bench_does_not_map_is_refused(tmp_path: Path):
    # The step reads the run's copy of the weights under its artifacts, never the user's file.
    with pytest.raises(ValueError, match=r"--weights s3://bench-output/emr-artifacts/.*/weights/"):
        step_command("featurize", run_options(), tmp_path, {"--output": "/data/out"})


def test_the_spark_floor_runs_under_the_steps_own_command_line(tmp_path: Path):
    local = {"--output": "/o", "--weights": "/w.h5", "--progress": "/p.json", "--model-cache": "/c"}
    command, _ = step_command("featurize", run_options(), tmp_path, local)
    floor = with_application(command, Path("/bench/spark_floor.py"), ["--manifest=/m"])
    entry = command.index(str(JOBS_DIR / "featurize.py"))
    assert floor == [*command[:entry], "/bench/spark_floor.py", "--manifest=/m"]
    assert "--driver-java-options" in floor[:entry] and "--conf" in floor[:entry]
