"""A run's clusters on EMR: found by the run's tags, checked before anything acts on them, and
ended when an earlier attempt of the run left one running. What makes retried tasks safe.

Each function takes a boto3 EMR client, so the tests call them against moto.

* A run's cluster is found by its tags (dag_id + deployment + run_id, emr_pipeline.cluster): a
  retried create_cluster reuses the cluster its first try started instead of starting a second.
  In an account other teams use too, ListClusters returns theirs as well: only clusters named
  like this DAG's are described, and one the connection may not describe is not ours.
* Nothing acts on a cluster (terminate, wait on its steps, cost it) before `check_run_cluster`
  has seen the run's tags on it.
* A step is found by its name on the run's cluster (the steps go in with the cluster).
* When a run starts again from preflight, clusters an earlier attempt of the same run left
  running are terminated, and waited for, first: one cluster per run at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from emr_pipeline.cluster import ACTIVE_CLUSTER_STATES, ENDED_CLUSTER_STATES, cluster_name

# What EMR answers for a cluster the caller may not describe.
_NOT_YOURS = frozenset({"AccessDeniedException", "AccessDenied"})


class ForeignClusterError(RuntimeError):
    """A cluster the run was about to act on does not carry the run's tags."""


def _tags_of(cluster: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}


def find_run_clusters(
    emr: Any,
    tags: Mapping[str, str],
    states: Iterable[str] = ACTIVE_CLUSTER_STATES,
    created_after: datetime | None = None,
) -> list[str]:
    """Ids of the clusters in `states` (created after `created_after`) whose tags include
    every item of `tags`, oldest first."""
    if not tags:
        raise ValueError("refusing to match clusters without tags: it would match all of them")
    name_prefix = cluster_name(tags["dag_id"], "") if "dag_id" in tags else ""
    found: list[tuple[Any, str]] = []
    paginator = emr.get_paginator("list_clusters")
    since = {"CreatedAfter": created_after} if created_after else {}
    for page in paginator.paginate(ClusterStates=list(states), **since):
        for summary in page.get("Clusters", []):
            if not summary.get("Name", "").startswith(name_prefix):
                continue  # another team's cluster: not even described
            try:
                cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _NOT_YOURS:
                    continue  # named like ours, but not tagged as ours
                raise
            have = _tags_of(cluster)
            if all(have.get(key) == value for key, value in tags.items()):
                created = summary.get("Status", {}).get("Timeline", {}).get("CreationDateTime")
                found.append((created, summary["Id"]))
    found.sort(key=lambda item: (item[0] is None, item[0] or 0, item[1]))
    return [cluster_id for _, cluster_id in found]


def check_run_cluster(emr: Any, cluster_id: str, tags: Mapping[str, str]) -> None:
    """Raise ForeignClusterError unless `cluster_id` carries every one of the run's `tags`.

    An admin-like connection could act on any cluster; this makes the DAG refuse to, whatever
    its permissions.
    """
    if not tags:
        raise ValueError("refusing to check a cluster against no tags")
    have = _tags_of(emr.describe_cluster(ClusterId=cluster_id)["Cluster"])
    wrong = {key: have.get(key) for key, value in tags.items() if have.get(key) != value}
    if wrong:
        raise ForeignClusterError(
            f"cluster {cluster_id} is not this run's: its tags {wrong} differ from "
            f"{dict(tags)}; the DAG does not act on it"
        )


def find_steps(emr: Any, cluster_id: str, names: Iterable[str]) -> dict[str, str]:
    """{name: step id} of the steps on the cluster with these names (the newest of each)."""
    wanted = set(names)
    found: dict[str, str] = {}
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id):
        for step in page.get("Steps", []):  # EMR lists the newest step first
            if step["Name"] in wanted and step["Name"] not in found:
                found[step["Name"]] = step["Id"]
    return found


def end_earlier_attempts(
    emr: Any,
    tags: Mapping[str, str],
    wait_seconds: float = 1800,
    poll_seconds: float = 15,
) -> list[str]:
    """Terminate this run's clusters that are still active and wait until they have ended.

    Returns their ids. Raises TimeoutError when one is still not terminated after
    `wait_seconds` (the run must not start a second cluster next to it).
    """
    clusters = find_run_clusters(emr, tags)
    if not clusters:
        return []
    emr.terminate_job_flows(JobFlowIds=clusters)
    deadline = time.monotonic() + wait_seconds
    pending = set(clusters)
    while pending:
        for cluster_id in sorted(pending):
            state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
            if state in ENDED_CLUSTER_STATES:
                pending.discard(cluster_id)
        if not pending:
            break
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"clusters {sorted(pending)} of an earlier attempt of this run were asked to "
                f"terminate but are still not terminated after {wait_seconds:.0f} s"
            )
        time.sleep(poll_seconds)
    return clusters
