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
  :func:`fpn_variants.config.check_config` before anything is built.
* :class:`TrainingSpeed` times the training iterations alone and logs it at the end; a resumed
  run's numbers cover all its iterations.
"""

import argparse
import datetime
import logging
import os
import random
import time
import weakref
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    HookBase,
    SimpleTrainer,
    TrainerBase,
    default_argument_parser,
    default_setup,
)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import Checkpointer
from .config import add_fpn_variants_config, check_config
from .data import register_coco_instances_from_path
from .data.resumable import (
    ITERATION_STREAM,
    build_resumable_train_loader,
    derive_seed,
    find_resumable_sampler,
    resolve_seed,
)

__all__ = [
    "Checkpointer",
    "SeedEachIteration",
    "Trainer",
    "TrainingSpeed",
    "argument_parser",
    "register_datasets_from_args",
    "setup",
    "main",
]

logger = logging.getLogger(__name__)


def _create_ddp_model(model: torch.nn.Module) -> torch.nn.Module:
    """``create_ddp_model`` that also works for a model on the CPU (GLOO)."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cuda":
        return create_ddp_model(model, broadcast_buffers=False)
    # CPU modules take no device_ids (Detectron2 passes [local_rank], which DDP rejects).
    return DistributedDataParallel(model, broadcast_buffers=False)


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
        # Same construction as DefaultTrainer.__init__, with the two CPU fixes above; it cannot
        # be reached through a hook because DefaultTrainer calls create_ddp_model directly.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self._sampler = find_resumable_sampler(data_loader)
        # Seed of the data stream and of every iteration's RNGs; a resume takes the saved one.
        self.seed = self._sampler.seed if self._sampler is not None else resolve_seed(cfg)
        model = _create_ddp_model(model)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
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
        MODEL.WEIGHTS and start at iteration 0."""
        super().resume_or_load(resume=resume)
        if self._sampler is not None:
            self._sampler.start_batch = self.start_iter

    def train(self) -> Optional[Dict]:
        """Train, then evaluate (EvalHook); return the last evaluation results (rank 0; None
        elsewhere or without DATASETS.TEST), not only when TEST.EXPECTED_RESULTS is set."""
        super().train()
        return getattr(self, "_last_eval_results", None) if comm.is_main_process() else None

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
        start = time.perf_counter()
        results = super().test(cfg, model, evaluators)
        logger.info(f"Evaluation took {time.perf_counter() - start:.1f} s.")
        return results


def argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--dataset-train`` / ``--dataset-test`` and
    ``--allow-partial-weights``."""
    parser = default_argument_parser(epilog)
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="load MODEL.WEIGHTS even if it fits the model only in part (e.g. another neck or "
        "class count): the rest keeps its initialization. Default: a mismatch is an error",
    )
    for split in ("train", "test"):
        parser.add_argument(
            f"--dataset-{split}",
            nargs=3,
            action="append",
            default=[],
            metavar=("NAME", "JSON", "IMAGE_ROOT"),
            help=f"register a COCO-format dataset by path and use it in DATASETS.{split.upper()} "
            "(repeatable; put it before the trailing config options)",
        )
    return parser


def register_datasets_from_args(args: argparse.Namespace) -> Dict[str, List[str]]:
    """Register the ``--dataset-train`` / ``--dataset-test`` datasets of ``args``.

    Returns:
        dict: {"train": [names], "test": [names]} (empty lists when not given).
    """
    names = {"train": [], "test": []}
    for split in names:
        for name, json_file, image_root in getattr(args, f"dataset_{split}", None) or []:
            register_coco_instances_from_path(name, json_file, image_root)
            names[split].append(name)
    return names


def _apply_dataset_names(cfg: CfgNode, names: Dict[str, List[str]]) -> None:
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


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from the command line: get_cfg -> add_fpn_variants_config -> merge the file (plain
    YAML: python tags are refused) -> datasets given by path (they set DATASETS.* and
    NUM_CLASSES) -> merge the trailing options (so they win) -> OUTPUT_DIR ".../auto" named after
    the config file -> :func:`~fpn_variants.config.check_config` -> freeze -> ``default_setup``
    (logging, seed, config dump in OUTPUT_DIR)."""
    cfg = get_cfg()
    add_fpn_variants_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file, allow_unsafe=False)
    _apply_dataset_names(cfg, register_datasets_from_args(args))
    cfg.merge_from_list(args.opts)
    _resolve_auto_output_dir(cfg, args.config_file)
    check_config(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="fpn_variants")
    _set_cpu_threads(cfg)
    return cfg


def main(args: argparse.Namespace):
    """Train (then evaluate on DATASETS.TEST), or only evaluate with ``--eval-only``.

    Returns:
        OrderedDict: evaluation results {dataset: {task: {metric: value}}}.
    """
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        Checkpointer(
            model, save_dir=cfg.OUTPUT_DIR, allow_partial=args.allow_partial_weights
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg, allow_partial_weights=args.allow_partial_weights)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()
