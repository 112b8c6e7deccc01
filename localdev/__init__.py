"""Local development: sample data, the demos (`make demo`, `make jobs-demo`), the EMR emulator
and the native Airflow stack (`make airflow`)."""
