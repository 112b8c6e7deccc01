"""Uploading a run's artifacts: which objects, under which keys, and idempotent on retry."""

from __future__ import annotations

import io
import zipfile

import pytest

from emr_pipeline.artifacts import upload_artifacts
from emr_pipeline.plan import ArtifactUris
from tests.dag.paths import BOOTSTRAP_DIR, JOBS_DIR, REPO

PREFIX = "s3://arts/emr-artifacts/fruit_features_emr/manual__1/"
BASE = "emr-artifacts/fruit_features_emr/manual__1"
EXPECTED_KEYS = {
    f"{BASE}/jobs/featurize.py",
    f"{BASE}/jobs/pca.py",
    f"{BASE}/jobs/validate.py",
    f"{BASE}/jobs/imagefeatures.zip",
    f"{BASE}/bootstrap/install-python-deps.sh",
    f"{BASE}/bootstrap/requirements-emr.txt",
    f"{BASE}/bootstrap/constraints.txt",
}


@pytest.fixture
def arts(s3):
    s3.create_bucket(Bucket="arts")
    return s3


def test_uploads_every_artifact_under_the_run_prefix(arts):
    outcome = upload_artifacts(arts, PREFIX, JOBS_DIR, BOOTSTRAP_DIR, REPO / "constraints.txt")
    assert set(outcome) == EXPECTED_KEYS
    assert set(outcome.values()) == {"uploaded"}
    listed = {o["Key"] for o in arts.list_objects_v2(Bucket="arts")["Contents"]}
    assert listed == EXPECTED_KEYS
    body = arts.get_object(Bucket="arts", Key=f"{BASE}/jobs/featurize.py")["Body"].read()
    assert body == (JOBS_DIR / "featurize.py").read_bytes()
    # The URIs the cluster config and steps use point at these very objects.
    uris = ArtifactUris(PREFIX)
    for uri in (uris.package_zip, uris.bootstrap_script, uris.requirements, uris.constraints):
        assert uri.removeprefix("s3://arts/") in listed


def test_package_zip_holds_the_importable_package(arts):
    upload_artifacts(arts, PREFIX, JOBS_DIR, BOOTSTRAP_DIR)
    data = arts.get_object(Bucket="arts", Key=f"{BASE}/jobs/imagefeatures.zip")["Body"].read()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "imagefeatures/__init__.py" in names
    assert "imagefeatures/featurize.py" in names
    assert all(name.startswith("imagefeatures/") for name in names)


def test_upload_is_idempotent(arts):
    upload_artifacts(arts, PREFIX, JOBS_DIR, BOOTSTRAP_DIR, REPO / "constraints.txt")
    again = upload_artifacts(arts, PREFIX, JOBS_DIR, BOOTSTRAP_DIR, REPO / "constraints.txt")
    assert set(again.values()) == {"unchanged"}
    assert len(arts.list_objects_v2(Bucket="arts")["Contents"]) == len(EXPECTED_KEYS)


def test_missing_local_file_fails_clearly(arts, tmp_path):
    with pytest.raises(FileNotFoundError, match="install-python-deps.sh"):
        upload_artifacts(arts, PREFIX, JOBS_DIR, tmp_path)
