"""The fruit_features_emr DAG's building blocks.

Most modules are free of Airflow imports: each builder is a plain function of the run's
parameters, so the tests call them directly and the DAG file stays a thin wiring of operators.
Four modules are Airflow's side: `params` (the trigger form), `operators` (run-scoped create and
terminate), `sensors` (step waits that explain failures) and `triggers` (the deferred wait that
cancels its step when killed). The DAG's folder is on sys.path when Airflow parses it and runs
its tasks, so `emr_pipeline` imports from there (the triggerer needs it on PYTHONPATH).
"""
