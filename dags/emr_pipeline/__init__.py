"""The fruit_features_emr DAG's building blocks, in three layers (`make lint` checks them):

1. Pure builders, no AWS call and no Airflow: `contract` (what the DAG shares with the jobs),
   `parameter`, `uris`, `options` (RunOptions: every run parameter, once), `settings`,
   `cluster`, `plan` (a run's every URI, its cluster request and its steps).
2. Functions of a boto3 client, tested against moto: `s3`, `artifacts`, `run_clusters`,
   `listing`, `seals`, `preflight`, `watch`, `cost`, `report`.
3. Airflow's side: `operators` (the trigger form, run-scoped create and terminate), `sensors`,
   `triggers`.

The DAG's folder is on sys.path when Airflow parses it and runs its tasks, so `emr_pipeline`
imports from there (the triggerer needs it on PYTHONPATH).
"""
