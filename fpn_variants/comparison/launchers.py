"""Launchers: where the runs of a comparison execute.

* :class:`LocalLauncher`: subprocesses on this machine, ``jobs`` at a time; with CUDA, each
  run gets its own ``num_gpus`` devices (CUDA_VISIBLE_DEVICES), disjoint from the other runs'.
* :class:`SubmititLauncher`: one submitit job per run, on Slurm (``cluster="slurm"``) or on
  submitit's local executor (``cluster="local"``, what the tests use). A job stopped by the
  scheduler (time limit, preemption) is requeued by submitit and its run resumes from its last
  checkpoint (``tools/train_net.py --resume``).
* :func:`print_commands`: one shell line per missing run, for any other scheduler.

A launcher that cannot start (submitit not installed, no ``sbatch``) fails in
:func:`make_launcher`, before anything is submitted.
"""

import os
import queue
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .runs import RunFailedError, RunSpec, execute

try:  # optional: only the submitit launchers need it
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - exercised where submitit is missing
    submitit = None
    Checkpointable = object

__all__ = [
    "LAUNCHERS",
    "LauncherUnavailableError",
    "LocalLauncher",
    "SlurmOptions",
    "SubmititLauncher",
    "make_launcher",
    "print_commands",
]

LAUNCHERS = ("local", "slurm", "submitit-local")
# Called with each finished run (recorded=False: another launcher holds it) or its error.
Finished = Callable[[RunSpec, bool, Optional[BaseException]], None]


class LauncherUnavailableError(RuntimeError):
    """The chosen launcher cannot start here (the message says why and what to do)."""


@dataclass(frozen=True)
class SlurmOptions:
    """Slurm resources of each run's job (one job per run)."""

    partition: str = ""
    time_min: int = 4320
    gpus_per_node: int = 0
    nodes: int = 1
    cpus_per_task: int = 10
    account: str = ""
    sbatch: Dict[str, str] = field(default_factory=dict)  # extra #SBATCH options


class LocalLauncher:
    """Runs on this machine, ``jobs`` at a time, each with ``num_gpus`` devices of its own."""

    def __init__(self, jobs: int = 1, num_gpus: int = 0, devices: Optional[Sequence[int]] = None):
        self.jobs = jobs
        self.device_groups = _device_groups(jobs, num_gpus, devices)

    def run(self, specs: Sequence[RunSpec], finished: Finished) -> None:
        groups: "queue.Queue[str]" = queue.Queue()
        for group in self.device_groups:
            groups.put(group)

        def one(spec: RunSpec) -> bool:
            env = None
            if self.device_groups:
                env = {"CUDA_VISIBLE_DEVICES": groups.get()}
            try:
                return execute(spec, env=env)
            finally:
                if env:
                    groups.put(env["CUDA_VISIBLE_DEVICES"])

        with ThreadPoolExecutor(self.jobs) as pool:
            futures = {pool.submit(one, spec): spec for spec in specs}
            _report_as_completed(futures, finished, pool)


def _device_groups(jobs: int, num_gpus: int, devices: Optional[Sequence[int]]) -> List[str]:
    """``jobs`` disjoint CUDA_VISIBLE_DEVICES values of ``num_gpus`` devices each ([] without
    GPUs); an error when the machine has too few."""
    if not num_gpus:
        return []
    devices = list(range(torch.cuda.device_count())) if devices is None else list(devices)
    if jobs * num_gpus > len(devices):
        raise LauncherUnavailableError(
            f"--jobs {jobs} x --num-gpus {num_gpus} needs {jobs * num_gpus} GPUs, this machine "
            f"has {len(devices)}: lower --jobs (or use --launcher slurm)"
        )
    return [
        ",".join(str(d) for d in devices[i * num_gpus : (i + 1) * num_gpus]) for i in range(jobs)
    ]


def _report_as_completed(futures: Dict, finished: Finished, pool: ThreadPoolExecutor) -> None:
    """Call ``finished`` as each run ends; on Ctrl-C or a failure the runs under way end and
    none starts (the failure is raised after the others finished)."""
    pending, failure = set(futures), None
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                finished(futures[future], bool(error is None and future.result()), error)
                if error is not None and failure is None:
                    failure = error
                    pool.shutdown(wait=False, cancel_futures=True)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    if failure is not None:
        raise failure


class RunJob(Checkpointable):
    """A run as a submitit job: on a scheduler's signal (time limit, preemption) submitit calls
    :meth:`checkpoint` and requeues the same job, whose ``--resume`` continues from the last
    checkpoint. On several nodes, every node's task starts the same command with its
    ``--machine-rank`` and the first node as ``--dist-url``."""

    def __call__(self, spec: RunSpec) -> bool:
        extra = []
        if spec.num_machines > 1:
            env = submitit.JobEnvironment()
            port = 20000 + int(env.job_id.split("_")[0]) % 20000
            extra = ["--machine-rank", str(env.node), "--dist-url"]
            extra.append(f"tcp://{env.hostnames[0]}:{port}")
        return execute(spec, extra_args=extra)


class SubmititLauncher:
    """One submitit job per run (Slurm or submitit's local executor), at most ``max_running``
    submitted at a time on the local executor."""

    def __init__(self, folder: str, cluster: str, options: SlurmOptions, max_running: int = 1):
        self.cluster = cluster
        self.max_running = max_running if cluster == "local" else None
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        params = {"timeout_min": options.time_min, "tasks_per_node": 1, "nodes": options.nodes}
        params["gpus_per_node"] = options.gpus_per_node
        if cluster == "slurm":
            params.update(cpus_per_task=options.cpus_per_task)
            extra = dict(options.sbatch)
            extra.update({"account": options.account} if options.account else {})
            params.update(slurm_partition=options.partition or None)
            params.update(slurm_additional_parameters=extra)
        self.executor.update_parameters(**params)
        self.jobs: List = []  # submitted jobs, for tests and callers that wait on them

    def submit(self, spec: RunSpec):
        job = self.executor.submit(RunJob(), spec)
        self.jobs.append(job)
        return job

    def run(self, specs: Sequence[RunSpec], finished: Finished) -> None:
        todo, running = list(specs), {}
        while todo or running:
            while todo and (self.max_running is None or len(running) < self.max_running):
                spec = todo.pop(0)
                running[self.submit(spec)] = spec
            job = _wait_any(running)
            spec = running.pop(job)
            try:
                finished(spec, bool(job.result()), None)
            except Exception as e:  # the job failed: submitit re-raises its error here
                finished(spec, False, RunFailedError(f"submitit job {job.job_id}: {e}"))
                raise


def _wait_any(running: Dict, poll_s: float = 1.0):
    """The first of the ``running`` jobs found done."""
    while True:
        for job in running:
            if job.done():
                return job
        time.sleep(poll_s)


def print_commands(specs: Sequence[RunSpec], write: Callable[[str], None] = print) -> None:
    """One line per run: ``cd <repository> && <command>``; a rerun of the comparison after they
    finished records them (their output folders are the comparison's)."""
    repo = os.getcwd()
    for spec in specs:
        write(f"cd {repo} && {spec.command()}")


def make_launcher(
    name: str,
    out: str,
    jobs: int = 1,
    num_gpus: int = 0,
    slurm: Optional[SlurmOptions] = None,
):
    """The launcher called ``name`` (:data:`LAUNCHERS`), checked to be able to start."""
    if name not in LAUNCHERS:
        raise ValueError(f"--launcher {name!r} is not one of {list(LAUNCHERS)}")
    if name == "local":
        return LocalLauncher(jobs, num_gpus)
    if submitit is None:
        raise LauncherUnavailableError(
            f"--launcher {name} needs submitit, which is not installed: pip install submitit"
        )
    if name == "slurm" and shutil.which("sbatch") is None:
        raise LauncherUnavailableError(
            "--launcher slurm: sbatch is not on PATH, so this machine cannot submit to Slurm; "
            "run the comparison on a login node of the cluster, or use --print-commands"
        )
    cluster = "slurm" if name == "slurm" else "local"
    options = slurm or SlurmOptions(gpus_per_node=num_gpus)
    return SubmititLauncher(os.path.join(out, "submitit"), cluster, options, max_running=jobs)
