"""Training and evaluation with Detectron2's ``DefaultTrainer``, working on CPU-only machines.

What differs from Detectron2's own ``tools/train_net.py``:

* ``--dataset-train NAME JSON IMAGE_ROOT`` / ``--dataset-test ...`` register COCO-format data by
  path (validated, see :mod:`fpn_variants.data.coco`) and select it; the class count of the
  detector heads then follows the training data.
* Several CPU processes (``--num-gpus N`` without CUDA) train with GLOO: the model is wrapped in
  ``DistributedDataParallel`` without ``device_ids`` (Detectron2 passes a GPU index), and each
  process gets ``cpu_count // N`` intra-op threads instead of oversubscribing the cores.
* Checkpoints (:mod:`fpn_variants.checkpoint`) are written atomically and loaded strictly and
  safely: ``--allow-partial-weights`` opts in to loading weights that fit the model only in part.
* ``--resume`` is exact: the data stream continues where it stopped
  (:mod:`fpn_variants.data.resumable`), and the global RNGs are seeded at every iteration from
  SEED, the rank and the iteration, so a resumed run ends with the weights of an uninterrupted
  one.
* The config is loaded without running YAML python tags and checked by
  :func:`fpn_variants.config.check_config` before anything is built. ``OUTPUT_DIR/config.yaml``
  is written once the checkpoint to resume (or MODEL.WEIGHTS) has loaded into the model, so a
  run refused at that point (e.g. ``--resume`` with another neck) leaves the folder's config
  describing its checkpoints.
* A run resumed after its last iteration (killed while it saved ``model_final.pth``) writes
  the missing ``model_final.pth``.
* One run per output folder: a run takes a lock in OUTPUT_DIR before writing anything there
  (:func:`claim_output_dir`); a second run on a folder in use is refused, naming the process
  that holds it. The lock goes with its process, so a crashed run never blocks ``--resume``.
* Several processes (:func:`launch`): collectives time out after ``--dist-timeout`` seconds, and
  when a process dies the launcher stops the others and raises :class:`WorkerFailedError`
  saying which one failed and how to resume.
* ``SOLVER.AMP.ENABLED`` trains under autocast on the CPU too (bfloat16; Detectron2's
  AMPTrainer asserts CUDA), ``TEST.AMP.ENABLED`` evaluates under it and ``MODEL.CHANNELS_LAST``
  runs the model channels-last (:mod:`fpn_variants.precision`).
* :class:`TrainingSpeed` times the training iterations alone, logs it at the end and puts
  ``train_time_s`` and ``train_images_per_s`` in metrics.json; a resumed run's numbers
  cover all its iterations.
"""

import argparse
import datetime
import json
import logging
import math
import os
import random
import signal
import time
import weakref
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import (
    DefaultTrainer,
    HookBase,
    TrainerBase,
    default_argument_parser,
    default_setup,
)
from detectron2.engine import launch as detectron2_launch
from detectron2.engine.defaults import create_ddp_model as detectron2_create_ddp_model
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.multiprocessing.spawn import (
    ProcessException,
    ProcessExitedException,
    ProcessRaisedException,
)
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import Checkpointer
from .config import add_fpn_variants_config, check_config
from .console import quiet_upstream_warnings
from .data import register_coco_instances_from_path
from .data.resumable import (
    ITERATION_STREAM,
    build_resumable_train_loader,
    derive_seed,
    find_resumable_sampler,
    resolve_seed,
)
from .io import FileLock, LockHeldError, atomic_write_text, describe_holder, is_held
from .precision import build_step_trainer, evaluation_autocast, use_channels_last

__all__ = [
    "Checkpointer",
    "LockHeldError",
    "SeedEachIteration",
    "SPLITS",
    "Trainer",
    "TrainingSpeed",
    "WorkerFailedError",
    "add_dataset_arguments",
    "apply_dataset_names",
    "argument_parser",
    "base_argument_parser",
    "claim_output_dir",
    "create_ddp_model",
    "launch",
    "register_datasets_from_args",
    "run_from_command_line",
    "save_config",
    "setup",
    "main",
]

logger = logging.getLogger(__name__)

# The splits of data given by path: --dataset-train / --dataset-test.
SPLITS = ("train", "test")

# The lock file a run holds in its OUTPUT_DIR.
RUN_LOCK = ".run.lock"
# The results of an --eval-only run, in its OUTPUT_DIR: {[dataset: ]{task: {metric: value}}}.
EVAL_RESULTS = "eval_results.json"


def claim_output_dir(output_dir: str) -> None:
    """Make this run the only one using ``output_dir``: rank 0 takes the lock ``OUTPUT_DIR/
    .run.lock`` and keeps it until the process ends (again in the same process: no-op).

    Call it before writing anything into the folder, on every rank (in a multi-process run the
    ranks learn rank 0's outcome, so that all of them stop if it is refused).

    Raises:
        LockHeldError: another process holds the folder (the message names it).
    """
    refusal = None
    lock = FileLock(os.path.join(os.path.realpath(output_dir), RUN_LOCK))
    if comm.is_main_process() and output_dir and not is_held(lock.path):
        try:
            lock.acquire(wait=False)  # held until the process ends
        except LockHeldError as e:
            refusal = (
                f"OUTPUT_DIR {output_dir} is in use by another run: {describe_holder(e.holder)}. "
                "Two runs in one folder would overwrite each other's checkpoints, metrics and "
                "logs: wait until it ends, or give this run another OUTPUT_DIR. (The lock, "
                f"{lock.path}, is released when its process ends, also by a crash.)",
                e.holder,
            )
    if comm.get_world_size() > 1:
        refusal = comm.all_gather(refusal)[0]
    if refusal is not None:
        raise LockHeldError(*refusal)


def create_ddp_model(model: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """Detectron2's ``create_ddp_model(model, **options)`` that also works for a model on the CPU
    (GLOO): there DDP takes no ``device_ids`` (Detectron2 passes [local_rank], which DDP rejects)
    and the CUDA communication hook ``fp16_compression`` is left out."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cuda":
        return detectron2_create_ddp_model(model, **options)
    options.pop("fp16_compression", None)
    return DistributedDataParallel(model, **options)


class SeedEachIteration(HookBase):
    """Seed torch's, NumPy's and Python's global RNGs before every step from the trainer's
    ``seed``, the rank and the iteration (RPN and ROI-head sampling draw from torch's).

    Makes a step's randomness independent of what ran before it (a resume, an evaluation), at
    the cost of a few microseconds per iteration.
    """

    def before_step(self):
        seed = derive_seed(self.trainer.seed, ITERATION_STREAM, comm.get_rank(), self.trainer.iter)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)


class TrainingSpeed(HookBase):
    """Time of the training iterations alone: data loading, forward, backward and optimizer
    step, from this hook's ``before_step`` (the first hook) to its ``after_step`` (the first to
    run after the step), as Detectron2's ``IterationTimer`` measures for its "Overall training
    speed" line. Start-up, checkpoint writes, evaluation, PreciseBN and the metric writers fall
    outside. The rate leaves out the first ``warmup`` iterations (Detectron2 does too).

    Kept in checkpoints: a resumed run reports every iteration it ran once.
    """

    def __init__(self, images_per_iteration: int, warmup: int = 3):
        self.images_per_iteration = images_per_iteration
        self.warmup = warmup
        self.seconds = 0.0  # all iterations
        self.iterations = 0
        self.rate_seconds = 0.0  # iterations after the warm-up
        self.rate_iterations = 0
        self._start = 0.0

    def before_step(self):
        self._start = time.perf_counter()

    def after_step(self):
        seconds = time.perf_counter() - self._start
        self.seconds += seconds
        self.iterations += 1
        if self.trainer.iter >= self.warmup:
            self.rate_seconds += seconds
            self.rate_iterations += 1

    def seconds_per_iteration(self) -> float:
        """Mean time of an iteration after the warm-up (of all when there was none after)."""
        if self.rate_iterations:
            return self.rate_seconds / self.rate_iterations
        return self.seconds / max(self.iterations, 1)

    def summary(self) -> Dict[str, float]:
        """{"train_time_s": seconds of all iterations, "iterations", "seconds_per_iteration",
        "images_per_s"} (the last two after the warm-up)."""
        per_iteration = self.seconds_per_iteration()
        return {
            "train_time_s": self.seconds,
            "iterations": self.iterations,
            "seconds_per_iteration": per_iteration,
            "images_per_s": self.images_per_iteration / per_iteration if per_iteration else 0.0,
        }

    def after_train(self):
        if self.iterations:
            s = self.summary()
            storage = self.trainer.storage
            storage.put_scalar("train_time_s", s["train_time_s"], smoothing_hint=False)
            storage.put_scalar("train_images_per_s", s["images_per_s"], smoothing_hint=False)
            logger.info(
                f"Training iterations: {self.iterations} in {self.seconds:.1f} s "
                f"({datetime.timedelta(seconds=round(self.seconds))}); "
                f"{s['seconds_per_iteration']:.4f} s / it, {s['images_per_s']:.2f} images / s "
                f"after the first {self.warmup}; start-up, checkpoints, evaluation and PreciseBN "
                "excluded"
            )

    def state_dict(self) -> Dict[str, float]:
        return {
            "seconds": self.seconds,
            "iterations": self.iterations,
            "rate_seconds": self.rate_seconds,
            "rate_iterations": self.rate_iterations,
        }

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.seconds = state["seconds"]
        self.iterations = state["iterations"]
        self.rate_seconds = state["rate_seconds"]
        self.rate_iterations = state["rate_iterations"]


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with COCO evaluation, CPU multi-process training, strict and atomic
    checkpoints and exact resuming."""

    def __init__(self, cfg: CfgNode, *, allow_partial_weights: bool = False):
        """
        Args:
            cfg (CfgNode): a frozen config (see :func:`setup`).
            allow_partial_weights (bool): load MODEL.WEIGHTS even when it fits the model only in
                part (see :class:`fpn_variants.checkpoint.Checkpointer`).
        """
        claim_output_dir(cfg.OUTPUT_DIR)
        # Same construction as DefaultTrainer.__init__, with the two CPU fixes above; it cannot
        # be reached through a hook because DefaultTrainer calls create_ddp_model directly.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        self._config_to_save = cfg  # as given, before the worker scaling
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self._sampler = find_resumable_sampler(data_loader)
        # Seed of the data stream and of every iteration's RNGs; a resume takes the saved one.
        self.seed = self._sampler.seed if self._sampler is not None else resolve_seed(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = build_step_trainer(
            model,
            data_loader,
            optimizer,
            amp=cfg.SOLVER.AMP.ENABLED,
            precision=cfg.SOLVER.AMP.PRECISION,
            device=cfg.MODEL.DEVICE,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = Checkpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_partial=allow_partial_weights,
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self) -> List[HookBase]:
        # TrainingSpeed first: it times the steps and nothing else (see its docstring).
        self.training_speed = TrainingSpeed(self.cfg.SOLVER.IMS_PER_BATCH)
        return [self.training_speed, SeedEachIteration(), *super().build_hooks()]

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        """Detectron2's model, channels-last with MODEL.CHANNELS_LAST
        (:func:`fpn_variants.precision.use_channels_last`)."""
        model = super().build_model(cfg)
        return use_channels_last(model) if cfg.MODEL.CHANNELS_LAST else model

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """Detectron2's training data, from a stream that can restart at any iteration
        (:func:`fpn_variants.data.resumable.build_resumable_train_loader`)."""
        return build_resumable_train_loader(cfg)

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state["seed"] = self.seed
        state["world_size"] = comm.get_world_size()
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "seed" not in state_dict:
            logger.warning("The checkpoint has no seed: the resumed run's data and RNGs differ.")
            return
        self.seed = int(state_dict["seed"])
        if self._sampler is not None:
            self._sampler.seed = self.seed
        if state_dict.get("world_size") != comm.get_world_size():
            logger.warning(
                f"The checkpoint was written by {state_dict.get('world_size')} processes, this "
                f"run has {comm.get_world_size()}: the data order after resuming differs from "
                "an uninterrupted run's."
            )

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from OUTPUT_DIR's last checkpoint (``resume``, if there is one): weights,
        optimizer, scheduler, iteration, seed and position in the data stream. Otherwise load
        MODEL.WEIGHTS and start at iteration 0. Then, the run being able to start, write
        OUTPUT_DIR/config.yaml and remove the temporary files of saves killed mid-write."""
        super().resume_or_load(resume=resume)
        if self._sampler is not None:
            self._sampler.start_batch = self.start_iter
        save_config(self._config_to_save)
        self.checkpointer.remove_interrupted_saves()

    def train(self) -> Optional[Dict]:
        """Train, then evaluate (EvalHook); return the last evaluation results (rank 0; None
        elsewhere or without DATASETS.TEST), not only when TEST.EXPECTED_RESULTS is set."""
        if self.start_iter >= self.max_iter:
            self._save_missing_final_checkpoint()
        super().train()
        return getattr(self, "_last_eval_results", None) if comm.is_main_process() else None

    def _save_missing_final_checkpoint(self) -> None:
        # A run killed while it saved model_final.pth resumes from the checkpoint saved just
        # before, at the same iteration: there is no step left to run, and no final file.
        if os.path.isfile(os.path.join(self.cfg.OUTPUT_DIR, "model_final.pth")):
            return
        logger.info(
            f"Resumed at iteration {self.start_iter} of SOLVER.MAX_ITER={self.max_iter}: training "
            "is over, but model_final.pth is missing (the run stopped while saving it?); saving "
            "it from the last checkpoint."
        )
        self.checkpointer.save("model_final", iteration=self.start_iter - 1)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None
    ) -> DatasetEvaluator:
        """COCO box AP, plus mask AP when ``MODEL.MASK_ON``; files under OUTPUT_DIR/inference."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
        return COCOEvaluator(dataset_name, tasks=tasks, output_dir=output_folder)

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators=None) -> Dict:
        """Detectron2's evaluation, under autocast with TEST.AMP.ENABLED."""
        start = time.perf_counter()
        amp = cfg.TEST.AMP.ENABLED
        with evaluation_autocast(amp, cfg.SOLVER.AMP.PRECISION, cfg.MODEL.DEVICE):
            results = super().test(cfg, model, evaluators)
        logger.info(f"Evaluation took {time.perf_counter() - start:.1f} s.")
        return results


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return seconds


def base_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--dist-timeout`` (see :func:`launch`)."""
    parser = default_argument_parser(epilog)
    parser.add_argument(
        "--dist-timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT.total_seconds(),
        metavar="SECONDS",
        help="with several processes: how long a collective waits for the others before the "
        "process gives up (a process that died is noticed at once; one that hangs, after this). "
        "Default: Detectron2's, %(default)g",
    )
    return parser


def argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """:func:`base_argument_parser` plus ``--dataset-train`` / ``--dataset-test`` and
    ``--allow-partial-weights``."""
    parser = base_argument_parser(epilog)
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="load MODEL.WEIGHTS even if it fits the model only in part (e.g. another neck or "
        "class count): the rest keeps its initialization. Default: a mismatch is an error",
    )
    add_dataset_arguments(
        parser,
        "register a COCO-format dataset by path and use it in DATASETS.{SPLIT} "
        "(repeatable; put it before the trailing config options)",
    )
    return parser


def add_dataset_arguments(parser: argparse.ArgumentParser, help: str) -> None:
    """``--dataset-train`` / ``--dataset-test NAME JSON IMAGE_ROOT`` (repeatable): COCO-format
    data by path (:func:`register_datasets_from_args`); "{SPLIT}" in ``help`` names the split."""
    for split in SPLITS:
        parser.add_argument(
            f"--dataset-{split}",
            nargs=3,
            action="append",
            default=[],
            metavar=("NAME", "JSON", "IMAGE_ROOT"),
            help=help.replace("{SPLIT}", split.upper()),
        )


def register_datasets_from_args(args: argparse.Namespace) -> Dict[str, List[str]]:
    """Register the ``--dataset-train`` / ``--dataset-test`` datasets of ``args``.

    Returns:
        dict: {"train": [names], "test": [names]} (empty lists when not given).
    """
    names = {split: [] for split in SPLITS}
    for split in names:
        for name, json_file, image_root in getattr(args, f"dataset_{split}", None) or []:
            register_coco_instances_from_path(name, json_file, image_root)
            names[split].append(name)
    return names


def apply_dataset_names(cfg: CfgNode, names: Dict[str, List[str]]) -> None:
    """Select the datasets registered by path ({"train"/"test": [names]}, empty: keep the
    config's) in DATASETS.TRAIN / DATASETS.TEST; NUM_CLASSES follows the training data."""
    if names["train"]:
        cfg.DATASETS.TRAIN = tuple(names["train"])
        classes = MetadataCatalog.get(names["train"][0]).thing_classes
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(classes)
        cfg.MODEL.RETINANET.NUM_CLASSES = len(classes)
        logger.info(f"NUM_CLASSES set to {len(classes)} from dataset '{names['train'][0]}'.")
    if names["test"]:
        cfg.DATASETS.TEST = tuple(names["test"])
    train, test = cfg.DATASETS.TRAIN, cfg.DATASETS.TEST
    if train and test and names["train"]:
        ref = MetadataCatalog.get(train[0]).get("thing_classes")
        for name in test:
            if MetadataCatalog.get(name).get("thing_classes") != ref:
                logger.warning(f"Test dataset '{name}' has other classes than '{train[0]}'.")


def _set_cpu_threads(cfg: CfgNode) -> None:
    """Split the CPU cores between the local processes when training on the CPU."""
    local = comm.get_local_size()
    if cfg.MODEL.DEVICE == "cpu" and local > 1:
        threads = max(1, (os.cpu_count() or 1) // local)
        torch.set_num_threads(threads)
        logger.info(f"{local} CPU processes on this machine: {threads} torch thread(s) each.")


def _resolve_auto_output_dir(cfg: CfgNode, config_file: str) -> None:
    """``OUTPUT_DIR: ".../auto"`` becomes ``.../<config file name without .yaml>``.

    Lets a base config give every leaf its own output folder (leaves stay one-key files and two
    of them can never write into the same folder by a copy-paste slip).
    """
    head, tail = os.path.split(cfg.OUTPUT_DIR.rstrip("/"))
    if tail == "auto":
        if not config_file:
            raise ValueError("OUTPUT_DIR ends with 'auto' but no --config-file names the run")
        cfg.OUTPUT_DIR = os.path.join(head, os.path.splitext(os.path.basename(config_file))[0])


def save_config(cfg: CfgNode) -> None:
    """Write ``OUTPUT_DIR/config.yaml`` (main process, atomically), as Detectron2's
    ``default_setup`` does; :class:`Trainer` and ``--eval-only`` call it once the weights have
    loaded."""
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
        atomic_write_text(path, cfg.dump())
        logger.info(f"Full config saved to {path}")


def _default_setup(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Detectron2's ``default_setup`` (OUTPUT_DIR, loggers with their log.txt, environment and
    arguments in the log, seeds) without its dump of ``config.yaml`` (see :func:`save_config`)."""
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    for name in ("fvcore", "detectron2"):
        setup_logger(cfg.OUTPUT_DIR, comm.get_rank(), name=name, configure_stdout=False)
    # Without an OUTPUT_DIR, default_setup writes no file; the loggers above write log.txt.
    no_output_dir = cfg.clone()
    no_output_dir.defrost()
    no_output_dir.OUTPUT_DIR = None
    default_setup(no_output_dir, args)


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from the command line: get_cfg -> add_fpn_variants_config -> merge the file (plain
    YAML: python tags are refused) -> datasets given by path (they set DATASETS.* and
    NUM_CLASSES) -> merge the trailing options (so they win) -> OUTPUT_DIR ".../auto" named after
    the config file -> :func:`~fpn_variants.config.check_config` -> freeze ->
    :func:`claim_output_dir` -> Detectron2's ``default_setup`` (logging, seed) except the config
    dump: ``OUTPUT_DIR/config.yaml`` is written once the run's weights have loaded
    (:func:`save_config`)."""
    cfg = get_cfg()
    add_fpn_variants_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file, allow_unsafe=False)
    apply_dataset_names(cfg, register_datasets_from_args(args))
    cfg.merge_from_list(args.opts)
    _resolve_auto_output_dir(cfg, args.config_file)
    check_config(cfg)
    cfg.freeze()
    claim_output_dir(cfg.OUTPUT_DIR)
    _default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="fpn_variants")
    logger.info(f"Running with full config:\n{cfg.dump()}")
    _set_cpu_threads(cfg)
    return cfg


def main(args: argparse.Namespace):
    """Train (then evaluate on DATASETS.TEST), or only evaluate with ``--eval-only`` (the results
    also go to ``OUTPUT_DIR/eval_results.json``).

    Returns:
        OrderedDict: evaluation results {dataset: {task: {metric: value}}}.
    """
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        Checkpointer(
            model, save_dir=cfg.OUTPUT_DIR, allow_partial=args.allow_partial_weights
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        save_config(cfg)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
            path = os.path.join(cfg.OUTPUT_DIR, EVAL_RESULTS)
            atomic_write_text(path, json.dumps(results, indent=2))
        return results
    trainer = Trainer(cfg, allow_partial_weights=args.allow_partial_weights)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


class WorkerFailedError(RuntimeError):
    """A process of a multi-process run died or raised; the launcher stopped the others."""


def launch(main_func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    """Run ``main_func(args)`` with Detectron2's ``launch`` and the process options of ``args``
    (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``, ``--dist-timeout``).

    With several processes: collectives wait at most ``--dist-timeout`` seconds for a process;
    a worker stopped by SIGTERM (the launcher stops the others when one fails) exits through
    its ``finally`` blocks, so it keeps no half-written file; and a failure raises
    :class:`WorkerFailedError` here, naming the process and how to resume (or
    :class:`LockHeldError` when the run was refused its OUTPUT_DIR, see :func:`claim_output_dir`).
    """
    try:
        detectron2_launch(
            _run_worker,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(main_func, args),
            timeout=datetime.timedelta(seconds=args.dist_timeout),
        )
    except ProcessException as e:
        error = _last_line(e) if isinstance(e, ProcessRaisedException) else ""
        refused = f"{LockHeldError.__module__}.{LockHeldError.__name__}: "
        if error.startswith(refused):  # every rank refused to start: nothing to resume
            raise LockHeldError(error[len(refused) :], {}) from None
        raise WorkerFailedError(_failure_message(e, args)) from None


def _run_worker(main_func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    if comm.get_world_size() > 1:
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    main_func(args)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    logger.error(
        f"Rank {comm.get_rank()} stopped by SIGTERM (when a process fails, the launcher stops the "
        "others)."
    )
    raise SystemExit(128 + signum)


def _last_line(error: ProcessRaisedException) -> str:
    """The exception line of the worker's traceback that ends ``error``'s message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else str(error)


def _failure_message(error: ProcessException, args: argparse.Namespace) -> str:
    index = error.error_index
    rank = args.machine_rank * args.num_gpus + index
    who = (
        f"process {index} of this machine (rank {rank} of {args.num_machines * args.num_gpus}, "
        f"pid {error.error_pid})"
    )
    if isinstance(error, ProcessExitedException):
        what = (
            f"was killed by {error.signal_name}"
            if error.signal_name
            else f"exited with code {error.exit_code}"
        )
    else:
        what = f"failed: {_last_line(error)}"
    return (
        f"Training stopped: {who} {what}. The other processes of this machine were stopped; "
        "those on other machines stop when their next collective fails (at once when a process "
        f"died, after --dist-timeout={args.dist_timeout:g} s when it hangs). Checkpoints are "
        "written atomically, so the last one in OUTPUT_DIR is intact: to continue from it, run "
        "the same command with --resume and the same number of processes."
    )


def run_from_command_line(argv: Optional[List[str]] = None, epilog: Optional[str] = None):
    """``tools/train_net.py``: parse the command line and :func:`main` in one process or, with
    ``--num-gpus`` / ``--num-machines``, in several (:func:`launch`). Also runs as
    ``python -m fpn_variants.engine`` (how the comparison trains each cell)."""
    quiet_upstream_warnings()
    args = argument_parser(epilog=epilog).parse_args(argv)
    print("Command Line Args:", args)
    launch(main, args)


if __name__ == "__main__":
    run_from_command_line()
