"""Fake keys and names shared by the fault-injection suite (tests/dag/on_emulator/).

The Airflow connection gets its own distinctive keys, so that the calls the DAG makes can be
told from the emulator's nodes' (the IAM coverage tests), and so that a leak into a task log is
found by a plain search. The world fixture gives them to the emulator (`add_principal`), as an
account's IAM users each have their own key; the nodes sign with the emulator's node key.
"""

from localdev.emr_emulator.credentials import Credentials

DAG_ACCESS_KEY = "FAKEDAGCONNKEY000001"
DAG_SECRET_KEY = "fake-dag-secret-which-must-never-be-logged"
DAG_CREDENTIALS = Credentials(DAG_ACCESS_KEY, DAG_SECRET_KEY)
# The test's own set-up calls (buckets, images): neither the DAG's nor the emulator's.
SETUP_ACCESS_KEY = "FAKESETUPKEY00000001"
SETUP_CREDENTIALS = Credentials(SETUP_ACCESS_KEY, "fake-setup-secret")
ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
