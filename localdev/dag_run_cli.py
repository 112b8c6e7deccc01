"""One DAG run in this process: `python -m localdev.dag_run_cli --conf JSON --airflow-home DIR`.

Migrates the SQLite database under DIR (its own, so that several of these processes run side
by side without locking each other), runs the DAG once with `dag.test()` and prints the
DagRunResult as JSON on its last line, after RESULT_MARKER. The `aws_default` connection comes
from the environment (AIRFLOW_CONN_AWS_DEFAULT, see dag_run.aws_connection).

`dag.test()` runs one DAG run per process; this is how a test runs two at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

RESULT_MARKER = "DAG_RUN_RESULT "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", required=True, help="the run's conf, as JSON")
    parser.add_argument("--airflow-home", required=True, type=Path)
    args = parser.parse_args(argv)
    run_conf = json.loads(args.conf)

    from localdev.dag_run import airflow_env, migrate_db

    home = args.airflow_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home)
    # Before airflow is first imported: it reads its configuration once.
    os.environ.update(env)
    migrate_db(env)

    from localdev.dag_run import run_dag

    result = run_dag(run_conf)
    print(RESULT_MARKER + json.dumps(dataclasses.asdict(result), default=str), flush=True)
    return 0 if result.state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
