"""Fake keys and names shared by the fault-injection suite (tests/dag/on_emulator/).

The Airflow connection gets its own distinctive fake keys, so that the calls the DAG makes can
be told from the emulator's own (the IAM coverage tests), and so that a leak into a task log is
found by a plain search. moto accepts any key.
"""

from tests.fakes import FAKE_KEY

DAG_ACCESS_KEY = "FAKEDAGCONNKEY000001"
DAG_SECRET_KEY = "fake-dag-secret-which-must-never-be-logged"
# The test's own set-up calls (buckets, images): neither the DAG's nor the emulator's.
SETUP_ACCESS_KEY = "FAKESETUPKEY00000001"
# The emulator's step runner signs with these (what the EMR nodes' instance role does on EMR).
EMULATOR_ACCESS_KEY = FAKE_KEY
ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
