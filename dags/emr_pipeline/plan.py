"""A run's plan: every URI, the cluster request and the steps, fixed once in preflight.

The downstream operators take their arguments from this plan (as XCom), so the whole run is
decided by one pure function of (params, deployment settings, dag_id, run_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emr_pipeline.artifacts import ArtifactUris
from emr_pipeline.cluster import ClusterContext, build_job_flow_overrides
from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.settings import DeploymentSettings
from emr_pipeline.steps import build_steps
from emr_pipeline.uris import as_prefix, join_uri, run_key, split_s3_uri

REPORT_NAME = "report.json"


@dataclass(frozen=True)
class RunPlan:
    run_key: str
    output_uri: str  # <output_uri>/<run>/: this run's results, and only this run's
    report_uri: str
    artifacts_uri: str  # s3://<artifacts>/<dag_id>/<run>/
    log_uri: str
    job_flow_overrides: dict[str, Any]
    steps: dict[str, list[dict[str, Any]]]
    s3_encryption: dict[str, str] | None = None  # ExtraArgs for the DAG's own S3 writes

    def as_xcom(self) -> dict[str, Any]:
        """Flat, JSON-serialisable; each key is pushed as its own XCom (multiple_outputs)."""
        return {
            "run_key": self.run_key,
            "output_uri": self.output_uri,
            "report_uri": self.report_uri,
            "artifacts_uri": self.artifacts_uri,
            "log_uri": self.log_uri,
            "job_flow_overrides": self.job_flow_overrides,
            "s3_encryption": self.s3_encryption or {},
            **{f"{name}_steps": steps for name, steps in self.steps.items()},
        }


SSE_ALGORITHMS = ("AES256", "aws:kms")


def s3_encryption(deployment: DeploymentSettings) -> dict[str, str]:
    """put_object/upload_file arguments for the deployment's server-side encryption."""
    if deployment.s3_sse not in SSE_ALGORITHMS:
        raise InvalidRunOptionsError(
            f"deployment setting s3_sse: expected one of {', '.join(SSE_ALGORITHMS)}, "
            f"got {deployment.s3_sse!r}"
        )
    extra = {"ServerSideEncryption": deployment.s3_sse}
    if deployment.s3_sse_kms_key_id:
        if deployment.s3_sse != "aws:kms":
            raise InvalidRunOptionsError(
                "deployment setting s3_sse_kms_key_id needs s3_sse=aws:kms"
            )
        extra["SSEKMSKeyId"] = deployment.s3_sse_kms_key_id
    return extra


def default_artifacts_root(output_uri: str) -> str:
    bucket, _ = split_s3_uri(output_uri)
    return f"s3://{bucket}/emr-artifacts"


def make_plan(
    options: RunOptions,
    deployment: DeploymentSettings,
    *,
    dag_id: str,
    run_id: str,
    owner: str,
    with_constraints: bool = True,
) -> RunPlan:
    key = run_key(run_id)
    output = as_prefix(join_uri(options.output_uri, key))
    artifacts_root = deployment.artifacts_uri or default_artifacts_root(options.output_uri)
    artifacts = ArtifactUris(as_prefix(join_uri(artifacts_root, dag_id, key)))
    # EMR writes <LogUri>/<cluster-id>/steps/<step-id>/{stdout,stderr}.gz under this.
    log_uri = as_prefix(deployment.log_uri or join_uri(artifacts_root, "emr-logs"))
    encryption = s3_encryption(deployment)
    for setting, uri in (("artifacts_uri", artifacts_root), ("log_uri", log_uri)):
        try:
            split_s3_uri(uri)
        except ValueError as exc:
            raise InvalidRunOptionsError(f"deployment setting {setting}: {exc}") from exc
    ctx = ClusterContext(
        dag_id=dag_id,
        run_id=run_id,
        run_key=key,
        owner=owner,
        log_uri=log_uri,
        bootstrap_script_uri=artifacts.bootstrap_script,
        requirements_uri=artifacts.requirements,
        constraints_uri=artifacts.constraints if with_constraints else None,
    )
    return RunPlan(
        run_key=key,
        output_uri=output,
        report_uri=join_uri(output, REPORT_NAME),
        artifacts_uri=artifacts.prefix,
        log_uri=log_uri,
        job_flow_overrides=build_job_flow_overrides(options, deployment, ctx),
        steps=build_steps(options, artifacts, output.rstrip("/")),
        s3_encryption=encryption,
    )
