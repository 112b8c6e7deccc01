"""`make airflow`: the services of docker-compose.yaml, run natively (see stack.py)."""
