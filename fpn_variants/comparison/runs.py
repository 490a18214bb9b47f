"""One run of a comparison: its ``tools/train_net.py`` command, executed in a fresh process, and
the record made from its output folder.

Every launcher (local processes, Slurm or submitit's local executor, a command printed for
another scheduler) runs the same command, so a run's weights and AP are those of that command
rerun alone, bit for bit. The run's console output goes to ``<OUTPUT_DIR>/console.log``.
"""

import datetime
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..engine import EVAL_RESULTS, RUN_LOCK
from ..io import FileLock, LockHeldError, atomic_write_text
from ..model_zoo.metrics import read_metrics_file, read_training_metrics
from ..model_zoo.packaging import git_commit, versions
from .records import Evaluation, RunRecord

__all__ = ["RunFailedError", "RunSpec", "execute", "record_of", "train_net_args"]

CONSOLE_LOG = "console.log"
# Held by the launcher process that executes a run, from its start to its record.
LAUNCHER_LOCK = ".launcher.lock"


class RunFailedError(RuntimeError):
    """A run's process failed; the message names its log file and ends with its last lines."""


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to execute one run and record it, picklable (submitit sends it to a
    cluster node)."""

    detector: str
    neck: str
    seed: int
    config_file: str
    args: Tuple[str, ...]  # tools/train_net.py arguments
    output_dir: str
    record_path: str
    config_hash: str
    config: str  # resolved config, YAML
    iterations: int
    eval_only: bool = False
    threads: int = 1
    num_gpus: int = 0
    num_machines: int = 1
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def cell(self) -> str:
        return f"{self.detector}_{self.neck}"

    def command(self) -> str:
        """The shell command of this run, from the repository root."""
        return f"OMP_NUM_THREADS={self.threads} " + shlex.join(
            ["python", "tools/train_net.py", *self.args]
        )


def train_net_args(
    config_file: str,
    output_dir: str,
    seed: int,
    opts: Sequence[str] = (),
    datasets: Optional[Dict[str, Sequence[Sequence[str]]]] = None,
    processes: Sequence[str] = (),
    weights: str = "",
) -> List[str]:
    """The ``tools/train_net.py`` arguments of one run: ``--resume`` (an interrupted run
    continues from its last checkpoint) or ``--eval-only`` with MODEL.WEIGHTS ``weights``;
    ``processes``: e.g. ("--num-gpus", "8"); ``datasets``: {"train"/"test": [(name, json,
    root)]}."""
    args = ["--config-file", config_file, *processes]
    args += ["--eval-only"] if weights else ["--resume"]
    for split, entries in (datasets or {}).items():
        for entry in entries:
            args += [f"--dataset-{split}", *entry]
    args += [*opts, "SEED", str(seed), "OUTPUT_DIR", output_dir]
    return args + (["MODEL.WEIGHTS", weights] if weights else [])


def _held(path: str) -> bool:
    """Whether another process holds the :class:`FileLock` ``path`` (creates the file)."""
    try:
        FileLock(path).acquire(wait=False).release()
    except LockHeldError:
        return True
    return False


def execute(spec: RunSpec, extra_args: Sequence[str] = (), env: Optional[Dict] = None) -> bool:
    """Run ``spec``'s command in a fresh process, then write its record.

    ``extra_args``: process options known only where it runs (a node's --machine-rank and
    --dist-url: only machine rank 0 takes the locks and records); ``env``: added to the
    environment (e.g. CUDA_VISIBLE_DEVICES). A run that is recorded, or held by another process
    (a launcher, or a train_net on its OUTPUT_DIR), is left alone: False. True when this call
    recorded it.

    Raises:
        RunFailedError: the process failed (the message holds the log's last lines).
    """
    if "--machine-rank" in extra_args and _arg(extra_args, "--machine-rank") != "0":
        return _run_process(spec, extra_args, env) is None
    if os.path.isfile(spec.record_path) or _held(os.path.join(spec.output_dir, RUN_LOCK)):
        return False
    lock = FileLock(os.path.join(spec.output_dir, LAUNCHER_LOCK))
    try:
        lock.acquire(wait=False)
    except LockHeldError:
        return False
    try:
        if os.path.isfile(spec.record_path):  # recorded by a launcher that just released it
            return False
        failure = _run_process(spec, extra_args, env)
        if failure is not None:
            raise RunFailedError(failure)
        atomic_write_text(spec.record_path, record_of(spec).to_json())
        return True
    finally:
        lock.release()


def _run_process(spec: RunSpec, extra_args: Sequence[str], env: Optional[Dict]) -> Optional[str]:
    """Run the command, its output appended to ``console.log``; the failure message or None."""
    os.makedirs(spec.output_dir, exist_ok=True)
    log_path = os.path.join(spec.output_dir, CONSOLE_LOG)
    command = [sys.executable, "-m", "fpn_variants.engine", *spec.args, *extra_args]
    full_env = dict(os.environ, OMP_NUM_THREADS=str(spec.threads), **spec.env, **(env or {}))
    with open(log_path, "a", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        try:
            returncode = process.wait()
        finally:  # stopped (Ctrl-C, a scheduler's signal): the run stops too, resumable
            if process.poll() is None:
                process.terminate()
                process.wait()
    return None if returncode == 0 else _failure(spec, returncode, log_path)


def _arg(args: Sequence[str], name: str) -> str:
    return args[list(args).index(name) + 1]


def _failure(spec: RunSpec, returncode: int, log_path: str, lines: int = 15) -> str:
    with open(log_path, encoding="utf-8", errors="replace") as f:
        tail = f.readlines()[-lines:]
    return (
        f"run {spec.cell} seed {spec.seed} failed (exit code {returncode}); its log: "
        f"{log_path}; command: {spec.command()}. Rerun the comparison to resume it. Last lines:"
        "\n" + "".join(tail)
    )


def _metrics_lines(metrics_file: str) -> List[Dict]:
    """The JSON objects of a Detectron2 metrics.json, one per line (a line cut by an interrupted
    run is skipped)."""
    entries = []
    with open(metrics_file, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def _history(entries: List[Dict]) -> List[Evaluation]:
    """The evaluations among metrics.json's entries, with the iterations trained before each (a
    periodic evaluation is logged at the index of its last iteration)."""
    return [
        Evaluation(int(entry.get("iteration", 0)) + 1, _tasks(entry))
        for entry in entries
        if any(str(k).endswith("/AP") for k in entry)
    ]


def _tasks(entry: Dict) -> Dict[str, Dict[str, Optional[float]]]:
    tasks: Dict[str, Dict[str, Optional[float]]] = {}
    for key, value in entry.items():
        task, _, metric = str(key).rpartition("/")
        if task in ("bbox", "segm") and isinstance(value, (int, float)):
            tasks.setdefault(task, {})[metric] = value if value == value else None
    return tasks


def _last(entries: List[Dict], key: str) -> Optional[float]:
    """The last value of ``key`` among metrics.json's entries (None if never logged)."""
    return next((e[key] for e in reversed(entries) if key in e), None)


def record_of(spec: RunSpec) -> RunRecord:
    """The record of a finished run, from its output folder."""
    if spec.eval_only:
        metrics = read_metrics_file(os.path.join(spec.output_dir, EVAL_RESULTS))
        evaluations, train_time, speed = [Evaluation(spec.iterations, metrics)], None, None
    else:
        metrics_file = os.path.join(spec.output_dir, "metrics.json")
        entries = _metrics_lines(metrics_file)
        evaluations = _history(entries)
        if evaluations:  # the final evaluation is logged at MAX_ITER
            evaluations[-1] = Evaluation(spec.iterations, read_training_metrics(metrics_file))
        train_time = _last(entries, "train_time_s")
        speed = _last(entries, "train_images_per_s")
    return RunRecord(
        detector=spec.detector,
        neck=spec.neck,
        seed=spec.seed,
        config_file=spec.config_file,
        config_hash=spec.config_hash,
        config=spec.config,
        command=spec.command(),
        mode="eval" if spec.eval_only else "train",
        iterations=spec.iterations,
        evaluations=evaluations,
        train_time_s=train_time,
        train_images_per_s=speed,
        device=_device(spec),
        versions={k: v for k, v in versions().items() if k != "fpn_variants_git"},
        git_commit=git_commit() or "",
        host=socket.gethostname(),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _device(spec: RunSpec) -> str:
    if spec.num_gpus and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"{spec.num_machines} x {spec.num_gpus} x {name}"
    return f"CPU ({platform.processor() or platform.machine()}), {spec.threads} thread(s)"
