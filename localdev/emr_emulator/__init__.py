"""A local EMR: moto answers the AWS APIs, a step runner executes steps with local Spark.

    with EmrEmulator(port=0) as emu:
        boto3.client("emr", endpoint_url=emu.endpoint_url, ...)

or `python -m localdev.emr_emulator --host 127.0.0.1 --port 5000`.
"""

from localdev.emr_emulator.server import EmrEmulator

__all__ = ["EmrEmulator"]
