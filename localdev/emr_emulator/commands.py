"""Turning an EMR step's HadoopJarStep into a local command line."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from localdev.emr_emulator.staging import StagedStep
from localdev.local_spark import local_driver_java_options

SPARK_SUBMIT = str(Path(sys.executable).parent / "spark-submit")

# spark-submit options that take no value; every other --option takes one.
_SPARK_FLAGS = frozenset({"--verbose", "-v", "--supervise", "--version", "--help", "-h"})
# Options whose files spark-submit fetches before Spark's Hadoop configuration (and so the
# staged s3:// mounts) exists: they are given as local copies.
_SUBMIT_RESOURCES = frozenset(
    {"--py-files", "--files", "--jars", "--archives", "--properties-file", "--driver-class-path"}
)


class UnsupportedStepError(Exception):
    """The step does not run here: a custom JAR, no arguments, not spark-submit."""


# What a refusal tells the user to do, once: the flag exists for the emulator's own tests.
_ANY_COMMAND_HINT = (
    "other commands run only on an emulator started with allow_any_command=True "
    "(--allow-any-command), which is meant for tests"
)


def check_command(jar: str, args: list[str], allow_any_command: bool = False) -> None:
    """Refuse (UnsupportedStepError) a step the emulator does not run, before anything of it
    is staged.

    `command-runner.jar spark-submit ...` (what the DAG submits) runs. Anything else would run
    an arbitrary command on this machine, so it is refused unless `allow_any_command` (tests
    only): then `command-runner.jar` runs its arguments as a command and `script-runner.jar`
    runs its first argument with bash, as on EMR.
    """
    name = jar.rsplit("/", 1)[-1]
    if name == "script-runner.jar":
        if not allow_any_command:
            raise UnsupportedStepError(
                f"the emulator runs spark-submit steps only, not script-runner.jar "
                f"({_shown(args)}); {_ANY_COMMAND_HINT}"
            )
        if not args:
            raise UnsupportedStepError("script-runner.jar needs the script as first argument")
        return
    if name != "command-runner.jar":
        raise UnsupportedStepError(
            f"the emulator runs command-runner.jar spark-submit steps only, not {jar}"
        )
    if not args:
        raise UnsupportedStepError("command-runner.jar needs a command")
    if Path(args[0]).name != "spark-submit" and not allow_any_command:
        raise UnsupportedStepError(
            f"the emulator runs command-runner.jar spark-submit steps only, not "
            f"{_shown(args)}; {_ANY_COMMAND_HINT}"
        )


def build_command(
    jar: str,
    args: list[str],
    master: str = "local[*]",
    allow_any_command: bool = False,
    staged: StagedStep | None = None,
    spark_defaults: Mapping[str, str] | None = None,
) -> list[str]:
    """The local command for a step (see check_command for which run) whose s3:// arguments
    are staged (`staged`, when given).

    `spark-submit` becomes the venv's spark-submit with a local master; it keeps the step's
    s3:// URIs (Spark reads them through the staged mounts) but for its own resources, and
    gets the cluster's `spark_defaults` (which the step's own `--conf` options override); any
    other command gets the local copies.
    """
    check_command(jar, args, allow_any_command)
    if jar.rsplit("/", 1)[-1] == "script-runner.jar":
        return ["bash", *(staged.local_args if staged is not None else args)]
    if Path(args[0]).name == "spark-submit":
        # Only the name counts: the venv's spark-submit runs, never the path the step gives.
        return spark_submit_command(args[1:], master, staged, spark_defaults)
    return list(staged.local_args if staged is not None else args)


def _shown(args: list[str], limit: int = 200) -> str:
    """The refused command as the FailureDetails message quotes it: shell-quoted, cut short."""
    text = shlex.join(args) if args else "(no arguments)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def spark_submit_command(
    args: list[str],
    master: str = "local[*]",
    staged: StagedStep | None = None,
    spark_defaults: Mapping[str, str] | None = None,
) -> list[str]:
    """`spark-submit ARGS` for local Spark: the cluster's --master and --deploy-mode replaced.

    EMR's defaults are YARN in client mode; locally it is `master` in client mode, without the
    UI (no port clashes between concurrent steps), its ports on loopback and authenticated, and
    with the local driver Java options (quiet log4j config, C1-only JIT) unless the step gives
    its own. With `staged`, the
    resources spark-submit fetches itself are the local copies, and the staged mounts are
    confs, so the application's own arguments keep their s3:// URIs.
    """
    localize = staged.localize if staged is not None else (lambda value: value)
    kept: list[str] = []
    has_java_options = False
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-"):
            break  # the primary resource: the rest are the application's own arguments
        name, has_value_inline = arg.split("=", 1)[0], "=" in arg
        if arg in _SPARK_FLAGS:
            kept.append(arg)
            index += 1
            continue
        width = 1 if has_value_inline else 2
        option = args[index : index + width]
        if name in _SUBMIT_RESOURCES and has_value_inline:
            option = [f"{name}={localize(arg.split('=', 1)[1])}"]
        elif name in _SUBMIT_RESOURCES:
            option = [option[0], *(localize(value) for value in option[1:])]
        if name not in ("--master", "--deploy-mode"):
            has_java_options |= name == "--driver-java-options"
            kept.extend(option)
        index += width
    command = [SPARK_SUBMIT, "--master", master, "--deploy-mode", "client"]
    command += ["--conf", "spark.ui.enabled=false"]
    # The driver's RPC and block ports on loopback, and authenticated (a local master makes its
    # own secret): by default they listen on the machine's address, open to anyone who can
    # reach it, on a machine shared with other accounts (issue 30).
    command += [
        "--conf",
        "spark.driver.bindAddress=127.0.0.1",
        "--conf",
        "spark.driver.host=127.0.0.1",
    ]
    command += ["--conf", "spark.authenticate=true"]
    if not has_java_options:
        # A later --conf spark.driver.extraJavaOptions (the cluster's or the step's) replaces
        # these whole, the class archive with them.
        command += ["--driver-java-options", local_driver_java_options()]
    confs = {**(spark_defaults or {}), **(staged.hadoop_confs() if staged is not None else {})}
    for key, value in confs.items():  # before the step's own confs: a later --conf wins
        command += ["--conf", f"{key}={value}"]
    application = [localize(args[index])] if index < len(args) else []
    return command + kept + application + args[index + 1 :]
