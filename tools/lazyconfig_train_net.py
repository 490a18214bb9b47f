#!/usr/bin/env python
"""Train and evaluate a detector described by a LazyConfig file (configs/LazyConfig), with
Detectron2's ``tools/lazyconfig_train_net.py`` conventions: the file defines ``model``,
``dataloader`` (``train``, ``test``, ``evaluator``), ``optimizer``, ``lr_multiplier`` and
``train``.

Examples::

    # train RetinaNet R18-BiFPN on the built-in synthetic data (CPU), then evaluate it
    python tools/lazyconfig_train_net.py \\
        --config-file configs/LazyConfig/Synthetic/retinanet_R18_BiFPN.py

    # overrides are key=value (a path in the config, then a Python/YAML literal)
    python tools/lazyconfig_train_net.py \\
        --config-file configs/LazyConfig/Synthetic/retinanet_R18_BiFPN.py \\
        train.max_iter=500 dataloader.train.total_batch_size=8 train.output_dir=output/x

    # evaluate trained weights only
    python tools/lazyconfig_train_net.py --eval-only \\
        --config-file configs/LazyConfig/Synthetic/retinanet_R18_BiFPN.py \\
        train.init_checkpoint=output/lazyconfig/synthetic/retinanet_R18_BiFPN/model_final.pth

A LazyConfig file is Python: loading it executes it (the files shipped here only describe
objects; building happens in this script). Load only config files you trust.

Differences from Detectron2's script: checkpoints are fpn_variants' (atomic saves, strict
loading, no unpickling of arbitrary objects: :mod:`fpn_variants.checkpoint`); several processes
on the CPU (``--num-gpus N`` without CUDA) wrap the model in ``DistributedDataParallel`` without
device ids; ``train.amp.enabled=True`` trains under autocast on the CPU too (bfloat16),
``train.amp.precision`` ("float16", "bfloat16", "": the device's default) and
``train.amp.eval_enabled`` / ``train.channels_last`` as the YAML keys SOLVER.AMP.PRECISION,
TEST.AMP.ENABLED and MODEL.CHANNELS_LAST; ``dataloader.evaluator=null`` skips the evaluation;
``main`` returns the last evaluation results after training too. As ``tools/train_net.py``: one
run per output folder (``train.output_dir`` is locked before anything is written there, a second
run on it is refused) and ``--dist-timeout SECONDS`` bounds how long a process waits in a
collective for another.
"""

import logging

# first: the package hides the upstream notices that fvcore and detectron2 print when imported
import fpn_variants  # noqa: F401  isort: skip  registers the necks' builders and built-in datasets
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from fvcore.nn.precise_bn import get_bn_modules

from fpn_variants.checkpoint import Checkpointer
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.engine import base_argument_parser, claim_output_dir, create_ddp_model, launch
from fpn_variants.precision import build_step_trainer, evaluation_autocast, use_channels_last

logger = logging.getLogger("fpn_variants")
# The config path of the autocast precision, as errors name it.
PRECISION_KEY = "train.amp.precision"


def do_test(cfg, model) -> dict:
    """Evaluate ``model`` on ``dataloader.test`` with ``dataloader.evaluator`` (none: skip)."""
    if cfg.dataloader.get("evaluator") is None:
        return {}
    amp = cfg.train.amp
    enabled, precision = amp.get("eval_enabled", False), amp.get("precision", "")
    with evaluation_autocast(enabled, precision, cfg.train.device, PRECISION_KEY):
        results = inference_on_dataset(
            model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
        )
    print_csv_format(results)
    return results


def do_train(args, cfg) -> dict:
    """Train with ``SimpleTrainer`` (under autocast if ``train.amp.enabled``: see
    :func:`fpn_variants.precision.build_step_trainer`), Detectron2's hooks and checkpoints in
    ``train.output_dir``; return the results of the last evaluation."""
    model = build_model(cfg)
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = build_step_trainer(
        model,
        train_loader,
        optimizer,
        amp=cfg.train.amp.enabled,
        precision=cfg.train.amp.get("precision", ""),
        device=cfg.train.device,
        key=PRECISION_KEY,
    )
    checkpointer = Checkpointer(model, cfg.train.output_dir, trainer=trainer)
    results = {}

    def test_and_keep() -> dict:
        results.clear()
        results.update(do_test(cfg, model))
        return results

    main_process = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            (
                # BN statistics recomputed before each evaluation, as TEST.PRECISE_BN does.
                hooks.PreciseBN(
                    cfg.train.eval_period,
                    model,
                    instantiate(cfg.dataloader.train),
                    cfg.train.precise_bn.num_iter,
                )
                if cfg.train.get("precise_bn", {}).get("enabled") and get_bn_modules(model)
                else None
            ),
            (
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
                if main_process
                else None
            ),
            hooks.EvalHook(cfg.train.eval_period, test_and_keep),
            (
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if main_process
                else None
            ),
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return results


def build_model(cfg):
    """``model`` on ``train.device``, channels-last with ``train.channels_last``."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return use_channels_last(model) if cfg.train.get("channels_last", False) else model


def main(args) -> dict:
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    claim_output_dir(cfg.train.output_dir)  # before anything is written there
    default_setup(cfg, args)  # logging, seed (train.seed), config saved in train.output_dir

    if args.eval_only:
        model = build_model(cfg)
        model = create_ddp_model(model, **cfg.train.ddp)
        Checkpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    return do_train(args, cfg)


if __name__ == "__main__":
    quiet_upstream_warnings()
    launch(main, base_argument_parser(epilog=__doc__).parse_args())
