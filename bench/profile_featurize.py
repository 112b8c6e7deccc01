"""Where the time of our Spark jobs goes: a py-spy profile plus per-process CPU and memory.

Each stage (our featurize job on N and on a few images, our pca job, the notebook's PCA stage
on the same features, the no-Spark limit) runs as its own `spark-submit` (or plain Python)
process tree, as `make bench` launches it, under a small launcher that reaps the whole tree.
Meanwhile this process samples every process of the tree from /proc every 0.25 s: CPU-seconds
(user + sys) per process and per thread (JVM threads are grouped by name: JIT compilers, GC,
executor tasks, py4j threads running the driver's calls, ...), and resident memory. Unless
--no-py-spy, `py-spy record --subprocesses --idle` samples every Python thread of the tree;
with --jfr, Java Flight Recorder samples the JVM's methods. (The launcher's
getrusage(RUSAGE_CHILDREN) is kept as `cpu_s_getrusage` only: it can miss the Python workers.)

The report, per stage:
- processes: CPU-seconds (also by thread group), peak resident memory and lifetime of the JVM,
  the Python driver, the pyspark daemon and its workers;
- driver timeline: JVM launch (before the Python driver exists), then the driver's main thread
  by the line of job code it is in (wall seconds; while a Spark action runs, the driver waits
  on the JVM, so an action's line holds the whole action), then JVM shutdown;
- Python workers: wall seconds of the workers' main threads by activity (TF import and model
  build, JPEG decode, resize/preprocess, model call, Arrow in/out, per-task overhead, waiting
  for a task, ...); the limit's single process is classified the same way;
- for featurize on two sizes: each quantity split into a fixed cost and a cost per 1000 images.

Examples:
    .venv/bin/python -m bench.profile_featurize --images 2000
    .venv/bin/python -m bench.profile_featurize --images 2000 --stages featurize --no-py-spy \
        --repeat 2                         # CPU-seconds only, for A/B comparisons
    .venv/bin/python -m bench.profile_featurize --stages featurize@4000,featurize@12000 \
        --no-py-spy                        # peak memory against N
    .venv/bin/python -m bench.profile_featurize --stages featurize \
        --featurize-arg=--partitions=8     # the job with other arguments
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import linecache
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "profile"
DEFAULT_WORK = REPO_ROOT / "bench" / "work"
STAGES = ("featurize-small", "featurize", "pca", "notebook-pca", "limit")
PR_SET_CHILD_SUBREAPER = 36
MIB = 2**20


# --- the launcher: runs one command, reaps its whole tree, reports the tree's CPU-seconds ---


def launch_and_account(result_path: Path, command: list[str]) -> int:
    """Run `command`; write wall seconds and the CPU-seconds of all its descendants.

    This process becomes a child subreaper, so descendants orphaned on the way (the pyspark
    daemon once the JVM exits) are re-parented here and reaped, and their CPU counts too.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    started = time.time()
    child = subprocess.Popen(command)
    returncode = child.wait()
    ended = time.time()
    deadline = ended + 30
    while time.time() < deadline:  # orphans, if any, end once the JVM is gone
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.1)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result_path.write_text(
        json.dumps(
            {
                "returncode": returncode,
                "wall_s": round(ended - started, 3),
                "cpu_user_s": round(usage.ru_utime, 3),
                "cpu_sys_s": round(usage.ru_stime, 3),
                "started": started,
            }
        )
    )
    return returncode


# --- sampling the process tree from outside ---


@dataclass
class ProcessRecord:
    pid: int
    kind: str
    cpu_s: float = 0.0
    peak_rss: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    threads: dict[int, tuple[str, float]] = field(default_factory=dict)  # tid: (name, CPU s)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU-seconds of each live thread of `pid`, with its name, from /proc."""
    threads = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks = int(fields[11]) + int(fields[12])  # utime, stime
                threads[int(tid)] = (name, ticks / _CLOCK_TICKS)
    return threads


def thread_group(kind: str, pid: int, tid: int, name: str) -> str:
    """Threads grouped by what they do (names are truncated to 15 characters by Linux)."""
    if kind != "jvm":
        return "main thread" if tid == pid else "other threads (TensorFlow pools, ...)"
    groups = (
        (("C1 CompilerThre", "C2 CompilerThre"), "JIT compilers"),
        (("GC Thread", "G1 ", "VM Thread", "VM Periodic"), "GC and VM"),
        (("Executor task l",), "executor tasks (scan, Arrow, parquet, cache)"),
        (("stdout writer f", "writer for pyt"), "writers feeding Python workers"),
        (("Thread-",), "py4j threads: driver calls (listing, planning, codegen)"),
    )
    for prefixes, group in groups:
        if name.startswith(prefixes):
            return group
    return "other (driver RPC, py4j, scheduler, ...)"


def process_kind(proc, script_names: Iterable[str]) -> str:
    """jvm, driver, daemon, worker (forked by the daemon), limit, launcher or other."""
    cmdline = " ".join(proc.cmdline())
    if "bench.profile_featurize" in cmdline:
        return "launcher"
    if proc.name() == "java":
        return "jvm"
    if "pyspark.daemon" in cmdline:
        with contextlib.suppress(Exception):
            if "pyspark.daemon" in " ".join(proc.parent().cmdline()):
                return "worker"
        return "daemon"
    if "bench/limit.py" in cmdline:
        return "limit"
    if "python" in proc.name() and any(name in cmdline for name in script_names):
        return "driver"
    return "other"


class TreeSampler:
    """Samples CPU-seconds and resident memory of every descendant of `root_pid` (minus
    `skip_pids`) every `interval` seconds until stopped."""

    def __init__(self, root_pid: int, skip_pids: set[int], scripts: Iterable[str]) -> None:
        self.root_pid, self.skip_pids, self.scripts = root_pid, skip_pids, tuple(scripts)
        self.records: dict[int, ProcessRecord] = {}
        self.peak_total = 0
        self.peak_by_kind: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.root_pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(0.25):
            now, total, by_kind = time.time(), 0, Counter()
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                if proc.pid in self.skip_pids:
                    continue
                with contextlib.suppress(psutil.Error):
                    with proc.oneshot():
                        record = self.records.get(proc.pid)
                        if record is None:
                            record = ProcessRecord(proc.pid, "other", first_seen=proc.create_time())
                            self.records[proc.pid] = record
                        if record.kind == "other":  # spark-submit's bash execs the JVM later
                            record.kind = process_kind(proc, self.scripts)
                        times, rss = proc.cpu_times(), proc.memory_info().rss
                    record.cpu_s = times.user + times.system
                    if record.kind != "other":
                        record.threads.update(thread_cpu(proc.pid))
                    record.peak_rss = max(record.peak_rss, rss)
                    record.last_seen = now
                    total += rss
                    by_kind[record.kind] += rss
            self.peak_total = max(self.peak_total, total)
            for kind, rss in by_kind.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind[kind], rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- reading py-spy's raw output ---

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*):(?P<line>\d+)\)$")


@dataclass(frozen=True)
class Frame:
    name: str
    file: str
    line: int

    @property
    def source(self) -> str:
        return source_line(self.file, self.line)


@functools.cache
def _source_lines(path: str) -> list[str]:
    """A source file's lines, also from inside a zip (workers import pyspark.zip)."""
    archive, dot_zip, member = path.partition(".zip/")
    if dot_zip:
        with (
            contextlib.suppress(OSError, KeyError, zipfile.BadZipFile),
            zipfile.ZipFile(archive + ".zip") as opened,
        ):
            return opened.read(member).decode(errors="replace").splitlines()
        return []
    return linecache.getlines(path)


def source_line(path: str, line: int) -> str:
    lines = _source_lines(path)
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


@dataclass
class Stack:
    pid: int
    kind: str
    frames: list[Frame]  # root first
    count: int


def parse_raw(path: Path, kinds: dict[int, str]) -> list[Stack]:
    """py-spy's raw (collapsed) output; `kinds` names the processes the sampler saw."""
    stacks = []
    for text in path.read_text().splitlines():
        if not text.strip():
            continue
        body, _, count = text.rpartition(" ")
        frames, pid, chain = [], 0, []
        for part in body.split(";"):
            if part.startswith("process "):
                pid = int(part.split(":", 1)[0].split()[1])
                chain.append(part)
                continue
            match = _FRAME.match(part)
            if match:
                frames.append(Frame(match["name"], match["file"], int(match["line"])))
        kind = kinds.get(pid) or _kind_from_chain(chain)
        stacks.append(Stack(pid, kind, frames, int(count)))
    return stacks


def _kind_from_chain(chain: list[str]) -> str:
    if chain and "bench.profile_featurize" in chain[-1]:
        return "launcher"
    daemons = sum("pyspark.daemon" in part for part in chain)
    if daemons:
        return "worker" if daemons > 1 else "daemon"
    if chain and "bench/limit.py" in chain[-1]:
        return "limit"
    return "driver" if chain and ".py" in chain[-1] else "other"


def main_thread(stack: Stack) -> bool:
    """Stacks of other threads start in threading's bootstrap (py4j's, for the driver)."""
    return bool(stack.frames) and stack.frames[0].name != "Thread._bootstrap"


# --- what a Python worker (or the limit's process) is doing ---


def _has(stack: Stack, *names: str) -> bool:
    return any(frame.name in names for frame in stack.frames)


def _has_prefix(stack: Stack, prefix: str) -> bool:
    return any(frame.name.startswith(prefix) for frame in stack.frames)


def _in_file(stack: Stack, fragment: str) -> bool:
    return any(fragment in frame.file for frame in stack.frames)


def _leaf(stack: Stack) -> Frame | None:
    return stack.frames[-1] if stack.frames else None


_TRACING = ("trace_function", "_maybe_define_function", "func_graph_from_py_func", "_initialize")
_ARROW_TO_PANDAS = ("arrow_to_pandas", "ArrowStreamPandasSerializer.arrow_to_pandas")


def worker_activity(stack: Stack) -> str:
    """The activity of one sampled stack of a Python worker (first matching rule wins)."""
    leaf = _leaf(stack)
    leaf_name = leaf.name if leaf else ""
    rules: list[tuple[str, Callable[[Stack], bool]]] = [
        ("TF import + model build", lambda s: _has(s, "get_feature_fn")),
        (
            "model: first call (graph trace)",
            lambda s: _has(s, "compile_feature_fn.<locals>.run") and _has(s, *_TRACING),
        ),
        ("model call (TensorFlow)", lambda s: _has(s, "compile_feature_fn.<locals>.run")),
        ("JPEG decode (decode_rgb)", lambda s: _has(s, "decode_rgb")),
        ("resize + preprocess (to_model_input)", lambda s: _has(s, "to_model_input")),
        ("batch assembly (np.stack, result frame)", lambda s: _has(s, "featurize_contents")),
        (
            "Arrow -> pandas (input)",
            lambda s: any(f.name.endswith(_ARROW_TO_PANDAS) for f in s.frames),
        ),
        (
            "pandas -> Arrow (output)",
            lambda s: (
                _has_prefix(s, "ArrowStreamPandasUDFSerializer._create")
                or _has_prefix(s, "ArrowStreamPandasSerializer._create")
            ),
        ),
        (
            "Arrow stream read (incl. waiting for the JVM)",
            lambda s: "load_stream" in leaf_name and _in_file(s, "pandas/serializers.py"),
        ),
        (
            "Arrow stream write (incl. waiting for the JVM)",
            lambda s: "dump_stream" in leaf_name and _in_file(s, "pandas/serializers.py"),
        ),
        ("idle: waiting for a task", lambda s: leaf_name == "read_int" and _has(s, "main")),
        (
            "gc.collect() after each task (pyspark daemon)",
            lambda s: leaf_name == "manager" and "gc.collect" in (leaf.source if leaf else ""),
        ),
        (
            "per task: importlib.invalidate_caches() (re-reads zip directories)",
            lambda s: _has(s, "invalidate_caches"),
        ),
        (
            "per task: UDF unpickling (incl. first imports)",
            lambda s: _has(s, "read_udfs", "read_command", "read_single_udf"),
        ),
        ("pickle rows in/out (Python UDF)", lambda s: _in_file(s, "pyspark/serializers.py")),
        (
            "worker start-up (imports)",
            lambda s: _in_file(s, "<frozen importlib") or _in_file(s, "<frozen zipimport"),
        ),
        ("user function (other)", lambda s: _in_file(s, "/jobs/") or _in_file(s, "/bench/")),
    ]
    for activity, rule in rules:
        if rule(stack):
            return activity
    return "other"


def daemon_activity(stack: Stack) -> str:
    leaf = _leaf(stack)
    if leaf and leaf.name == "manager":
        return "idle (select loop)"
    return "daemon start-up (imports)"


# --- what the JVM's threads run (Java Flight Recorder samples) ---

_JAVA_ACTIVITIES = (
    ("jdk/internal/loader/", "class loading (jar lookups)"),
    ("java/lang/ClassLoader", "class loading (jar lookups)"),
    ("java/util/zip/", "class loading (jar lookups)"),
    ("java/util/jar/", "class loading (jar lookups)"),
    ("objectweb/asm/", "closure cleaning (ASM)"),
    ("org/apache/parquet/", "parquet write/read"),
    ("datasources/parquet/", "parquet write/read"),
    ("org/apache/hadoop/conf/", "Hadoop Configuration copies (per task)"),
    ("java/io/ObjectInputStream", "task deserialization"),
    ("org/apache/arrow/", "Arrow (to and from Python)"),
    ("sql/execution/arrow/", "Arrow (to and from Python)"),
    ("sql/execution/python/", "Python runner I/O"),
    ("org/apache/spark/api/python/", "Python runner I/O"),
    ("sql/execution/columnar/", "in-memory cache (persist)"),
    ("org/apache/spark/storage/", "block manager (cache, broadcast)"),
    ("binaryfile/", "binaryFile scan (reading image files)"),
    ("org/apache/hadoop/fs/", "binaryFile scan (reading image files)"),
    ("org/codehaus/janino/", "codegen compile (Janino)"),
    ("org/apache/spark/ml/", "Spark ML (covariance, PCA)"),
    ("dev/ludovic/netlib/", "BLAS/LAPACK (netlib, Java)"),
    ("org/apache/spark/mllib/", "Spark ML (covariance, PCA)"),
    ("org/apache/spark/sql/catalyst/", "Catalyst (planning, generated projections)"),
    ("GeneratedClass", "Catalyst (planning, generated projections)"),
)


def java_activity(thread: str, frames: list[str]) -> str:
    """Leaf-first frames (`package/Class.method`) -> an activity, prefixed by thread kind."""
    if thread.startswith("Executor task launch"):
        where = "executor task"
    elif thread.startswith("Thread-"):
        where = "py4j (driver calls)"
    else:
        where = re.sub(r"[-#]?\d+", "", thread)[:30] or "?"
    for frame in frames:
        for marker, activity in _JAVA_ACTIVITIES:
            if marker in frame:
                return f"{where}: {activity}"
    return f"{where}: other"


def jvm_method_profile(recording: Path) -> dict[str, float]:
    """Seconds of Java execution samples (10 ms apart per running thread) by activity."""
    java = shutil.which("java")
    jfr = Path(os.path.realpath(java)).parent / "jfr" if java else Path("jfr")
    printed = subprocess.run(
        [str(jfr), "print", "--json", "--events", "jdk.ExecutionSample", str(recording)],
        capture_output=True,
        text=True,
        check=False,
    )
    if printed.returncode != 0:
        return {"jfr print failed": 0.0}
    activities: Counter[str] = Counter()
    for event in json.loads(printed.stdout)["recording"]["events"]:
        values = event["values"]
        thread = (values.get("sampledThread") or {}).get("javaName") or "?"
        frames = [
            f"{frame['method']['type']['name']}.{frame['method']['name']}"
            for frame in (values.get("stackTrace") or {}).get("frames", [])
        ]
        activities[java_activity(thread, frames)] += 0.01
    return {name: round(seconds, 2) for name, seconds in activities.most_common(15)}


# --- what the driver's main thread is in ---


def driver_line(stack: Stack) -> str:
    """The deepest frame in job code (jobs/ or bench/notebook_jobs.py), as `file:line text`."""
    for frame in reversed(stack.frames):
        if "/jobs/" in frame.file or frame.file.endswith("bench/notebook_jobs.py"):
            where = f"{Path(frame.file).name}:{frame.line}"
            return f"{where} {frame.source}"[:110]
    return "Python start-up and imports (before job code)"


# --- one stage ---


@dataclass
class StageRun:
    name: str
    images: int | None
    command: list[str]
    launcher: dict
    processes: list[ProcessRecord]
    peak_total: int
    peak_by_kind: dict[str, int]
    profile: Path | None = None
    rate: int = 0
    recording: Path | None = None
    report: dict = field(default_factory=dict)


def stage_command(
    stage: str,
    images: Path,
    output: Path,
    weights: Path,
    features: Path | None,
    featurize_args: list[str] | None = None,
    work: Path = DEFAULT_WORK,
) -> tuple[list[str], dict[str, str]]:
    """(command, environment overrides) of a stage, as `make bench` runs it: our jobs as the
    DAG's steps (bench.dag_steps; `featurize_args`, e.g. --partitions=8, replace or add the
    step's arguments), the notebook's with the same Java options."""
    from bench.dag_steps import run_options, step_command
    from localdev.local_spark import spark_submit_command

    bench = REPO_ROOT / "bench"
    progress = {"--progress": str(output / "_progress.json")}
    if stage.startswith("featurize"):
        local = {"--input": str(images), "--output": str(output), "--weights": str(weights)}
        local["--model-cache"] = str(work / "model-cache")
        local |= dict(arg.split("=", 1) for arg in featurize_args or [])
        return step_command("featurize", run_options(), work, {**local, **progress})
    if stage == "pca":
        local = {"--input": str(features), "--output": str(output), **progress}
        return step_command("pca", run_options(), work, local)
    if stage == "notebook-pca":
        args = ["pca", "--input", str(features), "--output", str(output)]
        return spark_submit_command(bench / "notebook_jobs.py", args), {}
    if stage == "limit":
        command = [sys.executable, str(bench / "limit.py"), "--input", str(images)]
        return [*command, "--weights", str(weights), "--runtime", "openvino"], {}
    raise ValueError(stage)


def run_stage(
    name: str,
    images: int | None,
    command: list[str],
    out_dir: Path,
    py_spy: bool,
    rate: int,
    env_extra: dict[str, str],
    jfr: bool = False,
) -> StageRun:
    from localdev.local_spark import local_driver_java_options, local_spark_env

    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{name}{'' if images is None else f'_{images}'}"
    result_path = out_dir / f"{tag}.launcher.json"
    profile = out_dir / f"{tag}.pyspy.txt" if py_spy else None
    recording = out_dir / f"{tag}.jfr" if jfr and "--driver-java-options" in command else None
    if recording:  # Java Flight Recorder's method sampling in the JVM (driver and executor)
        command = list(command)
        at = command.index("--driver-java-options") + 1
        flight = f"-XX:StartFlightRecording=filename={recording},settings=profile"
        # As the emulator does for a step with Flight Recorder: without the class archive.
        command[at] = f"{local_driver_java_options(alongside=[flight])} {flight}"
    launcher = [sys.executable, "-m", "bench.profile_featurize", "--exec", str(result_path)]
    full = [*launcher, "--", *command]
    if profile:
        py_spy_bin = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        full = [py_spy_bin, "record", "--subprocesses", "--idle", "--nonblocking"]
        full += ["--full-filenames", "--rate", str(rate), "--format", "raw"]
        full += ["-o", str(profile), "--", *launcher, "--", *command]
    env = local_spark_env()
    env.update(env_extra)
    print(f"--- {tag}: {' '.join(command[-6:])}", flush=True)
    with open(out_dir / f"{tag}.log", "w") as log:
        process = subprocess.Popen(full, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        skip = {process.pid} if profile else set()
        scripts = [part for part in command if part.endswith(".py")]
        sampler = TreeSampler(process.pid, skip, scripts)
        process.wait()
        sampler.stop()
    launched = json.loads(result_path.read_text()) if result_path.exists() else {}
    if process.returncode != 0 or launched.get("returncode") != 0:
        sys.exit(f"{tag} failed; see {out_dir / f'{tag}.log'}")
    run = StageRun(
        name,
        images,
        command,
        launched,
        list(sampler.records.values()),
        sampler.peak_total,
        dict(sampler.peak_by_kind),
        profile,
        rate,
        recording,
    )
    run.report = analyse(run)
    (out_dir / f"{tag}.report.json").write_text(json.dumps(run.report, indent=2) + "\n")
    return run


def analyse(run: StageRun) -> dict:
    """Everything the printed report shows, as plain data (also written as JSON)."""
    launched = run.launcher
    by_kind: dict[str, dict] = {}
    for record in run.processes:
        if record.kind in ("other", "launcher"):
            continue
        entry = by_kind.setdefault(record.kind, {"processes": 0, "cpu_s": 0.0, "lifetime_s": 0.0})
        entry["processes"] += 1
        entry["cpu_s"] = round(entry["cpu_s"] + record.cpu_s, 2)
        entry["lifetime_s"] = round(entry["lifetime_s"] + record.last_seen - record.first_seen, 1)
        entry["peak_mib"] = round(run.peak_by_kind.get(record.kind, 0) / MIB)
    threads: dict[str, Counter[str]] = defaultdict(Counter)
    jvm_names: Counter[str] = Counter()
    for record in run.processes:
        if record.kind in ("other", "launcher"):
            continue
        for tid, (name, cpu) in record.threads.items():
            threads[record.kind][thread_group(record.kind, record.pid, tid, name)] += cpu
            if record.kind == "jvm":
                jvm_names[re.sub(r"\d+", "N", name)] += cpu
    report: dict = {
        "stage": run.name,
        "images": run.images,
        "wall_s": launched["wall_s"],
        # Sum over the sampled processes. getrusage(RUSAGE_CHILDREN) lost the Python workers'
        # CPU in some runs (their parent, the pyspark daemon, ignores SIGCHLD): a check only.
        "cpu_s": round(sum(entry["cpu_s"] for entry in by_kind.values()), 2),
        "cpu_s_getrusage": round(launched["cpu_user_s"] + launched["cpu_sys_s"], 2),
        "peak_mib": round(run.peak_total / MIB),
        "processes": by_kind,
        "thread_cpu_s": {
            kind: {name: round(cpu, 2) for name, cpu in groups.most_common()}
            for kind, groups in threads.items()
        },
        "jvm_thread_names_cpu_s": {name: round(cpu, 2) for name, cpu in jvm_names.most_common(12)},
    }
    drivers = [r for r in run.processes if r.kind == "driver"]
    if drivers:
        first = min(r.first_seen for r in drivers)
        last = max(r.last_seen for r in drivers)
        report["before_driver_s"] = round(first - launched["started"], 2)
        report["after_driver_s"] = round(launched["started"] + launched["wall_s"] - last, 2)
    if run.recording and run.recording.exists():
        report["jvm_java_samples_s"] = jvm_method_profile(run.recording)
    if run.profile is None:
        return report
    kinds = {r.pid: r.kind for r in run.processes}
    stacks = [s for s in parse_raw(run.profile, kinds) if main_thread(s)]
    driver: Counter[str] = Counter()
    workers: Counter[str] = Counter()
    daemon: Counter[str] = Counter()
    for stack in stacks:
        seconds = stack.count / run.rate
        if stack.kind == "driver":
            driver[driver_line(stack)] += seconds
        elif stack.kind in ("worker", "limit"):
            workers[worker_activity(stack)] += seconds
        elif stack.kind == "daemon":
            daemon[daemon_activity(stack)] += seconds
    report["driver_lines_s"] = {k: round(v, 2) for k, v in driver.most_common()}
    report["worker_activity_s"] = {k: round(v, 2) for k, v in workers.most_common()}
    report["daemon_activity_s"] = {k: round(v, 2) for k, v in daemon.most_common()}
    return report


# --- printing ---


def print_report(report: dict) -> None:
    images = f", {report['images']} images" if report["images"] else ""
    print(f"\n=== {report['stage']}{images}")
    print(
        f"wall {report['wall_s']:.1f} s, CPU {report['cpu_s']:.1f} s (user+sys of every process "
        f"in the tree, /proc sampled every 0.25 s), peak RSS {report['peak_mib']} MiB (sum over "
        "the tree)"
    )
    print(f"{'process':<10}{'count':>6}{'CPU s':>9}{'CPU %':>7}{'peak MiB':>10}{'alive s':>9}")
    sampled_cpu = sum(p["cpu_s"] for p in report["processes"].values()) or 1.0
    for kind, entry in sorted(report["processes"].items(), key=lambda kv: -kv[1]["cpu_s"]):
        print(
            f"{kind:<10}{entry['processes']:>6}{entry['cpu_s']:>9.1f}"
            f"{100 * entry['cpu_s'] / sampled_cpu:>6.0f}%{entry['peak_mib']:>10}"
            f"{entry['lifetime_s']:>9.1f}"
        )
    for kind, groups in report["thread_cpu_s"].items():
        if kind in ("jvm", "worker", "limit"):
            parts = ", ".join(f"{name} {cpu:.1f}" for name, cpu in groups.items() if cpu >= 0.05)
            print(f"  {kind} CPU s by thread: {parts}")
    top = report["jvm_thread_names_cpu_s"].items()
    names = ", ".join(f"{name} {cpu:.1f}" for name, cpu in top if cpu >= 0.3)
    if names:
        print(f"  jvm CPU s by thread name: {names}")
    if "before_driver_s" in report:
        print(
            f"JVM launch before the Python driver exists: {report['before_driver_s']:.1f} s; "
            f"after the driver exits (JVM shutdown): {report['after_driver_s']:.1f} s"
        )
    for title, key in (
        ("driver main thread, by job-code line (wall s)", "driver_lines_s"),
        ("Python workers' main threads, by activity (worker-seconds, wall)", "worker_activity_s"),
        ("pyspark daemon (wall s)", "daemon_activity_s"),
        ("JVM Java execution samples (JFR; running Java code only)", "jvm_java_samples_s"),
    ):
        rows = report.get(key)
        if not rows:
            continue
        total = sum(rows.values()) or 1.0
        print(f"-- {title}: total {total:.1f}")
        for name, seconds in list(rows.items())[:14]:
            print(f"  {seconds:>7.1f} {100 * seconds / total:>5.1f}%  {name}")


def fixed_and_marginal(small: dict, large: dict) -> dict:
    """Each quantity as fixed + per-1000-images, from the two sizes (a straight line)."""
    n_small, n_large = small["images"], large["images"]

    def split(a: float, b: float) -> tuple[float, float]:
        slope = (b - a) / (n_large - n_small)
        return round(a - slope * n_small, 2), round(slope * 1000, 2)

    rows: dict[str, tuple[float, float]] = {
        "wall s": split(small["wall_s"], large["wall_s"]),
        "CPU s (whole tree)": split(small["cpu_s"], large["cpu_s"]),
    }
    for kind in sorted(set(small["processes"]) | set(large["processes"])):
        a = small["processes"].get(kind, {}).get("cpu_s", 0.0)
        b = large["processes"].get(kind, {}).get("cpu_s", 0.0)
        rows[f"CPU s: {kind}"] = split(a, b)
        small_threads = small["thread_cpu_s"].get(kind, {})
        large_threads = large["thread_cpu_s"].get(kind, {})
        for group in dict.fromkeys([*large_threads, *small_threads]):
            a, b = small_threads.get(group, 0.0), large_threads.get(group, 0.0)
            rows[f"CPU s: {kind}: {group}"] = split(a, b)
    for key, label in (("worker_activity_s", "workers"), ("driver_lines_s", "driver")):
        if key in small and key in large:
            for name in dict.fromkeys([*large[key], *small[key]]):
                a, b = small[key].get(name, 0.0), large[key].get(name, 0.0)
                if max(a, b) >= 0.5:
                    rows[f"{label}: {name}"] = split(a, b)
    print(f"\n=== featurize: fixed cost and cost per 1000 images ({n_small} vs {n_large} images)")
    print(f"{'fixed':>8}{'/1000':>8}  quantity")
    for name, (fixed, per_1000) in rows.items():
        print(f"{fixed:>8.1f}{per_1000:>8.1f}  {name}")
    return {name: {"fixed": f, "per_1000": p} for name, (f, p) in rows.items()}


# --- main ---


def parse_stage(text: str, default_images: int, small: int) -> tuple[str, int | None]:
    name, _, count = text.partition("@")
    if name not in STAGES:
        raise argparse.ArgumentTypeError(f"unknown stage {name!r}; choose from {STAGES}")
    if count:
        return name, int(count)
    if name == "featurize-small":
        return name, small
    return name, default_images


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--exec"]:  # the launcher, inside the profiled tree
        return launch_and_account(Path(argv[1]), argv[3:] if argv[2] == "--" else argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="N for featurize and pca")
    parser.add_argument("--small", type=int, default=200, help="images of the fixed-cost run")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated, in order, from {STAGES}; NAME@COUNT sets the images",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run each stage this many times")
    parser.add_argument("--no-py-spy", action="store_true", help="CPU and memory only")
    parser.add_argument(
        "--jfr", action="store_true", help="also record the JVM with Java Flight Recorder"
    )
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the jobs (repeatable)"
    )
    parser.add_argument(
        "--featurize-arg",
        action="append",
        default=[],
        help="extra argument for featurize.py, e.g. --featurize-arg=--partitions=8 (repeatable)",
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT / "jobs"))
    from bench.run_bench import ensure_images
    from imagefeatures.model import save_random_weights

    args.work.mkdir(parents=True, exist_ok=True)
    weights = args.work / "bench_random.weights.h5"
    if not weights.exists():
        save_random_weights(str(weights))
    env_extra = dict(item.split("=", 1) for item in args.env)
    stages = [parse_stage(s, args.images, args.small) for s in args.stages.split(",") if s]
    reports: dict[str, list[dict]] = defaultdict(list)
    for repeat in range(args.repeat):
        for name, count in stages:
            images = ensure_images(args.work, count) if count else None
            output = args.work / "out" / f"profile_{name}_{count}"
            features = args.work / "out" / f"profile_featurize_{args.images}" / "features"
            if name in ("pca", "notebook-pca") and not features.is_dir():
                sys.exit(f"{name} needs {features}: run the featurize stage first")
            command, step_env = stage_command(
                name, images or Path(), output, weights, features, args.featurize_arg, args.work
            )
            run = run_stage(
                name,
                count if name.startswith(("featurize", "limit")) else None,
                command,
                args.out / f"run{repeat + 1}",
                not args.no_py_spy,
                args.rate,
                {**step_env, **env_extra},
                args.jfr,
            )
            print_report(run.report)
            reports[f"{name}@{count}"].append(run.report)
    summary: dict = {"env": env_extra, "featurize_args": args.featurize_arg, "runs": reports}
    small = reports.get(f"featurize-small@{args.small}") or reports.get(f"featurize@{args.small}")
    large = reports.get(f"featurize@{args.images}")
    if small and large and args.small != args.images:
        summary["fixed_and_marginal"] = fixed_and_marginal(small[0], large[0])
    if args.repeat > 1 or len(stages) > 1:
        print("\n=== CPU-seconds (whole tree) and wall seconds per run")
        for key, runs in reports.items():
            cpu = ", ".join(f"{r['cpu_s']:.1f}" for r in runs)
            wall = ", ".join(f"{r['wall_s']:.1f}" for r in runs)
            peak = ", ".join(str(r["peak_mib"]) for r in runs)
            print(f"  {key:<22} CPU s: {cpu:<20} wall s: {wall:<20} peak MiB: {peak}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "profile.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
