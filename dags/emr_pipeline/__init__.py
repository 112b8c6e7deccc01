"""Pure helpers for the fruit_features_emr DAG.

Every module except `sensors` is free of Airflow imports: each builder is a plain function of
the run's parameters, so the tests call them directly and the DAG file stays a thin wiring of
operators. The DAG's folder is on sys.path when Airflow parses it, so `emr_pipeline` imports
from there.
"""
