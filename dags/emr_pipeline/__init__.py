"""The fruit_features_emr DAG's building blocks.

Most modules are free of Airflow imports: each builder is a plain function of the run's
parameters, so the tests call them directly and the DAG file stays a thin wiring of operators.
Four modules are Airflow's side: `params` (the trigger form), `operators` (run-scoped create and
terminate), `sensors` (step waits that explain failures) and `triggers` (the deferred wait that
cancels its step when killed). The DAG's folder is on sys.path when Airflow parses it and runs
its tasks, so `emr_pipeline` imports from there (the triggerer needs it on PYTHONPATH).

Where to start reading: `options.RunOptions` declares every run parameter once (type, default,
bounds, the form's text; `parameters` makes the form and the checks from it), `plan.make_plan`
turns a run's options into every URI, the cluster request and the steps, and `job_contract`
is what the DAG shares with the Spark jobs (their dataset names, weights, runtimes).
"""
