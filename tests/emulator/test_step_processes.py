"""What a step's processes expose on a machine shared with other accounts (issue 30).

A real spark-submit step through the emulator: while it runs, every port its Spark driver
listens on is a loopback one (measured from the kernel's socket table: by default Spark binds
the machine's address, open to every account and host that can reach it), and its environment
holds the nodes' key, never the caller's (make demo's AIRFLOW_CONN_AWS_DEFAULT).
"""

from __future__ import annotations

import ipaddress
import os

import psutil

from tests.emulator.helpers import command_step, create_cluster, read_log, wait_for, wait_for_steps

JOB = b"""
import json, os, time
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
assert spark.sparkContext.parallelize(range(100), 2).map(lambda x: x * 2).sum() == 9900
names = [k for k in os.environ if k.startswith(("AWS", "AIRFLOW"))]  # names only: no secret
print("ENV " + json.dumps({"names": names, "key_id": os.environ.get("AWS_ACCESS_KEY_ID")}))
time.sleep(8)  # the test reads the listening sockets meanwhile
spark.stop()
"""


def _listening_ports_of_children() -> set[tuple[str, int]]:
    found = set()
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            for connection in child.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    found.add((connection.laddr.ip, connection.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_a_steps_spark_listens_on_loopback_and_holds_only_the_nodes_key(
    emulator, emr, s3, bucket, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", '{"login": "caller-key", "password": "x"}')
    s3.put_object(Bucket=bucket, Key="job.py", Body=JOB)
    own_ports = _listening_ports_of_children()  # whatever listened before the step
    step = command_step("listen", "spark-submit", f"s3://{bucket}/job.py")
    cluster_id = create_cluster(emr, bucket, steps=[step])
    seen: set[tuple[str, int]] = set()

    def driver_listening() -> bool:
        seen.update(_listening_ports_of_children() - own_ports)
        return len(seen) >= 2  # the driver's RPC and block manager ports

    wait_for(driver_listening, timeout=90, what="the step's Spark driver to listen")
    (done,) = wait_for_steps(emr, cluster_id, timeout=120)
    assert done["Status"]["State"] == "COMPLETED", done["Status"]
    assert all(_is_loopback(ip) for ip, _ in seen), seen

    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    stdout = read_log(s3, f"{cluster['LogUri']}{cluster_id}/steps/{done['Id']}/stdout.gz")
    env_line = next(line for line in stdout.splitlines() if line.startswith("ENV "))
    import json

    env = json.loads(env_line.removeprefix("ENV "))
    assert not [name for name in env["names"] if name.startswith("AIRFLOW")], env
    assert env["key_id"] == emulator.node_credentials.access_key != emulator.credentials.access_key
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
