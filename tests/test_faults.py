"""Faults of multi-process training and of concurrent runs: a worker killed with SIGKILL stops the
run in bounded time and ``--resume`` ends like an uninterrupted run; a process that loses its
peer on another machine stops with an error (at once when the peer died, after --dist-timeout
when it hangs); a second run on an OUTPUT_DIR in use is refused and changes nothing there, and
the lock of a crashed run does not block ``--resume``."""

import functools
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
import torch.distributed as dist
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.utils import comm

from fpn_variants.comparison import Ledger, RunSpec, execute, train_net_args
from fpn_variants.engine import (
    RUN_LOCK,
    LockHeldError,
    Trainer,
    WorkerFailedError,
    argument_parser,
    base_argument_parser,
    launch,
    setup,
)

from .test_engine import CONFIG, TINY_OPTS, tiny_builtin_data  # noqa: F401  (a fixture)
from .test_lazyconfig import _train_net as lazyconfig_train_net

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERS, PERIOD = 5, 3  # a checkpoint after iteration 2, and the final one
KILLED_AT = PERIOD  # rank 1 is killed at the end of iteration 3, after that checkpoint
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "DATASETS.TEST", "()"]
BOUND_S = 20  # the survivors are gone this long after the kill (torch's own grace is 30 s)


class _KillSelf(HookBase):
    """SIGKILLs this process at the end of iteration ``iteration``, noting the time first."""

    def __init__(self, iteration: int, note: str):
        self.iteration, self.note = iteration, note

    def after_step(self):
        if self.trainer.iter == self.iteration:
            with open(self.note, "w") as f:
                f.write(str(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)


def _train(args, record: str, kill_rank1_at=None):
    """What ``fpn_variants.engine.main`` does to train, plus: rank 1 is killed at an iteration,
    and rank 0 records the loss of each iteration of this run in ``record``."""
    cfg = setup(args)
    trainer = Trainer(cfg)
    if kill_rank1_at is not None and comm.get_rank() == 1:
        trainer.register_hooks([_KillSelf(kill_rank1_at, record + ".killed")])
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    if comm.is_main_process():
        losses = {i: v for v, i in trainer.storage.history("total_loss").values()}
        with open(record, "w") as f:
            json.dump(losses, f)


def _two_process_args(output_dir, *extra):
    DatasetCatalog.get("synthetic_multiscale_train")  # generates the tiny data
    meta = MetadataCatalog.get("synthetic_multiscale_train")
    # by path: spawned processes do not see this process' registrations nor monkeypatches
    data = ["--dataset-train", "faults_train", meta.json_file, meta.image_root]
    opts = ["SOLVER.MAX_ITER", str(ITERS), "SOLVER.CHECKPOINT_PERIOD", str(PERIOD)]
    return argument_parser().parse_args(
        ["--config-file", CONFIG, "--num-gpus", "2", "--dist-url", "auto", *extra, *data]
        + [*TINY_OPTS, *SMALL, *opts, "OUTPUT_DIR", str(output_dir)]
    )


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_killed_worker_stops_the_run_and_resume_ends_like_an_uninterrupted_run(
    tiny_builtin_data, tmp_path  # noqa: F811
):
    reference = tmp_path / "uninterrupted"
    launch(
        functools.partial(_train, record=str(tmp_path / "reference.json")),
        _two_process_args(reference),
    )

    run = tmp_path / "killed"
    record = str(tmp_path / "killed.json")
    started = time.time()
    with pytest.raises(WorkerFailedError) as failure:
        launch(
            functools.partial(_train, record=record, kill_rank1_at=KILLED_AT),
            _two_process_args(run, "--dist-timeout", "60"),
        )
    stopped = time.time()
    killed = float(open(record + ".killed").read())
    assert started < killed < stopped < killed + BOUND_S
    message = str(failure.value)
    for part in ("process 1 of this machine (rank 1 of 2", "killed by SIGKILL", "--resume"):
        assert part in message
    log = (run / "log.txt").read_text()  # rank 0's: stopped by the launcher or by its all-reduce
    assert "Rank 0 stopped by SIGTERM" in log or "Exception during training" in log
    # Nothing half-written, the last checkpoint is the one before the kill and loads.
    names = sorted(os.listdir(run))
    assert not [n for n in names if ".tmp-" in n], names
    last = f"model_{PERIOD - 1:07d}.pth"
    assert (run / "last_checkpoint").read_text() == last and "model_final.pth" not in names
    assert _weights(run / last).keys() == _weights(reference / "model_final.pth").keys()

    # The lock file still names the killed run's rank 0, which is gone: it does not block.
    with pytest.raises(ProcessLookupError):
        os.kill(json.loads((run / RUN_LOCK).read_text())["pid"], 0)
    launch(functools.partial(_train, record=record), _two_process_args(run, "--resume"))
    expected = json.loads((tmp_path / "reference.json").read_text())
    resumed = json.loads(open(record).read())
    assert sorted(resumed, key=int) == [str(i) for i in range(PERIOD, ITERS)]
    for i, loss in resumed.items():
        assert loss == pytest.approx(expected[i], rel=1e-6, abs=1e-6), i
    final = _weights(run / "model_final.pth")
    reference_final = _weights(reference / "model_final.pth")
    assert final.keys() == reference_final.keys()
    for k, v in final.items():
        assert (v.double() - reference_final[k].double()).abs().max().item() <= 1e-6, k


def _all_reduce_until_rank1_stops(args, signum: int, pid_file: str):
    """All-reduce forever; rank 1 sends itself ``signum`` after a few rounds."""
    tensor = torch.ones(4)
    for step in itertools.count():
        dist.all_reduce(tensor)
        if comm.get_rank() == 1 and step == 10:
            with open(pid_file, "w") as f:
                f.write(f"{os.getpid()} {time.time()}")
            os.kill(os.getpid(), signum)


def _launch_machine(rank: int, port: int, timeout: float, signum: int, pid_file: str):
    """Machine ``rank`` of two, one process each, on localhost."""
    work = functools.partial(_all_reduce_until_rank1_stops, signum=signum, pid_file=pid_file)
    args = base_argument_parser().parse_args(
        ["--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank)]
        + ["--dist-url", f"tcp://127.0.0.1:{port}", "--dist-timeout", str(timeout)]
    )
    launch(work, args)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "signum, expected",
    [(signal.SIGKILL, "Connection"), (signal.SIGSTOP, "Timed out")],
    ids=["dies", "hangs"],
)
def test_a_process_whose_peer_on_another_machine_dies_or_hangs_stops(tmp_path, signum, expected):
    """Two machines of one process each (here two launchers in this process): nobody terminates
    machine 0's process when machine 1's dies or hangs; its all-reduce fails and its launcher
    raises, at once or after --dist-timeout."""
    port, timeout, pid_file = _free_port(), 10, str(tmp_path / "rank1")
    machine1_errors = []

    def machine1():
        try:
            _launch_machine(1, port, timeout, signum, pid_file)
        except WorkerFailedError as e:
            machine1_errors.append(str(e))

    thread = threading.Thread(target=machine1)
    thread.start()
    try:
        with pytest.raises(WorkerFailedError) as failure:
            _launch_machine(0, port, timeout, signum, pid_file)
        stopped = time.time()
        signalled = float(open(pid_file).read().split()[1])
        assert signalled + (timeout if signum == signal.SIGSTOP else 0) < stopped
        assert stopped < signalled + timeout + BOUND_S
        message = str(failure.value)
        assert "process 0 of this machine (rank 0 of 2" in message and expected in message
    finally:
        if os.path.exists(pid_file) and signum == signal.SIGSTOP:
            os.kill(int(open(pid_file).read().split()[0]), signal.SIGKILL)
        thread.join(60)
    # Machine 1's launcher names its process, killed by the signal or by the test.
    assert len(machine1_errors) == 1 and "(rank 1 of 2" in machine1_errors[0]
    assert "killed by SIGKILL" in machine1_errors[0]


# Holds the run lock of each folder given (as a training's rank 0 does), after forking a child
# that outlives it (as a data loader worker can): the child must not keep the lock.
HOLD = """
import os, sys, time
from fpn_variants.engine import claim_output_dir
for folder in sys.argv[1:]:
    claim_output_dir(folder)
child = os.fork()
if child == 0:
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
time.sleep(120)
"""


def _snapshot(folder):
    """{path: (size, mtime)} of every file under ``folder``."""
    paths = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    return {path: (os.path.getsize(path), os.path.getmtime(path)) for path in paths}


def test_a_second_run_on_a_folder_in_use_is_refused_and_a_crashed_run_does_not_block(
    tiny_builtin_data, tmp_path, capfd  # noqa: F811
):
    run = tmp_path / "run"
    cell = Ledger(str(tmp_path / "compare")).run_dir("faster_rcnn_fpn", seed=0)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run), cell], stdout=subprocess.PIPE, text=True
    )
    child = int(holder.stdout.readline())
    try:
        (run / "config.yaml").write_text("the running training's\n")
        before = _snapshot(tmp_path)
        in_use = f"OUTPUT_DIR {run} is in use by another run: process {holder.pid} on host"

        # The command line, with 2 processes: rank 0 is refused, rank 1 learns it, both stop.
        train_net = [sys.executable, os.path.join(REPO, "tools", "train_net.py")]
        second = subprocess.run(
            [*train_net, "--num-gpus", "2", "--config-file", CONFIG, "OUTPUT_DIR", str(run)],
            capture_output=True,
            text=True,
        )
        assert second.returncode == 1 and in_use in second.stderr, second.stderr
        assert f"-c {run} {cell}" in second.stderr  # the holder's command line

        tool = lazyconfig_train_net()
        lazy = os.path.join(REPO, "configs", "LazyConfig", "Synthetic", "retinanet_R18_FPN.py")
        lazy_args = ["--config-file", lazy, f"train.output_dir={run}"]
        with pytest.raises(LockHeldError, match=re.escape(f"OUTPUT_DIR {run} is in use")):
            tool.main(tool.base_argument_parser().parse_args(lazy_args))
        # A run of the comparison (and of make zoo): left to the process that holds it.
        args = tuple(train_net_args(CONFIG, cell, seed=0))
        spec = RunSpec("faster_rcnn", "fpn", 0, CONFIG, args, cell, cell + ".json", "", "", 1)
        assert execute(spec) is False
        assert _snapshot(tmp_path) == before  # nothing written, not even a log
    finally:
        holder.kill()
        holder.wait()
    # The holder crashed (SIGKILL); its forked child lives on, its record stays in the file.
    os.kill(child, 0)
    assert json.loads((run / RUN_LOCK).read_text())["pid"] == holder.pid
    try:
        args = argument_parser().parse_args(
            ["--config-file", CONFIG, "--resume", *TINY_OPTS, "OUTPUT_DIR", str(run)]
        )
        setup(args)
        assert json.loads((run / RUN_LOCK).read_text())["pid"] == os.getpid()
    finally:
        os.kill(child, signal.SIGKILL)
