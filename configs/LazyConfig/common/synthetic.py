"""The CPU recipe on the built-in synthetic data (configs/Synthetic/Base-*.yaml): data loaders,
optimizer, LR schedule and training settings shared by the three detectors.

256 px images with 6 classes (``fpn_variants.data.synthetic``), registered as
``synthetic_multiscale_{train,val}`` on ``import fpn_variants``; generated on first use.
"""

import torch
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from fvcore.common.param_scheduler import CosineParamScheduler
from omegaconf import OmegaConf

import fpn_variants  # noqa: F401  registers the built-in dataset names

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="synthetic_multiscale_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            # native size, no rescaling
            L(T.ResizeShortestEdge)(short_edge_length=[256], max_size=256, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=False,  # Mask R-CNN sets True
    ),
    total_batch_size=4,
    num_workers=1,  # decoding 256 px JPEGs is cheap; the 2 cores go to the model
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="synthetic_multiscale_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=256, max_size=256, sample_style="choice")
        ],
        image_format="${...train.mapper.image_format}",
        use_instance_mask="${...train.mapper.use_instance_mask}",  # no effect at test time
    ),
    num_workers="${..train.num_workers}",
)
dataloader.evaluator = L(COCOEvaluator)(
    dataset_name="${..test.dataset.names}",
    tasks=["bbox"],  # Mask R-CNN adds "segm"
    output_dir="${...train.output_dir}/inference",
)

# SGD whose step first clips the gradient norm of each parameter to 2.0 (Detectron2's
# SOLVER.CLIP_GRADIENTS): it keeps the high from-scratch LR stable. The optimizer class is
# itself a lazy call, so ``optimizer.params.model = model`` works as for a plain SGD.
optimizer = L(
    L(maybe_add_gradient_clipping)(
        cfg={
            "SOLVER": {
                "CLIP_GRADIENTS": {
                    "ENABLED": True,
                    "CLIP_TYPE": "norm",
                    "CLIP_VALUE": 2.0,
                    "NORM_TYPE": 2.0,
                }
            }
        },
        optimizer=torch.optim.SGD,
    )
)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.04,
    momentum=0.9,
    weight_decay=1e-4,
)

train = model_zoo.get_config("common/train.py").train
train.update(
    output_dir="output/lazyconfig/synthetic",  # each leaf names its own folder
    init_checkpoint="",  # no pretrained weights can be downloaded: train from scratch
    max_iter=150,
    eval_period=0,  # evaluate once, after training
    seed=42,
    device="cuda" if torch.cuda.is_available() else "cpu",
)
# Mixed precision and memory format (the YAML configs' SOLVER.AMP.ENABLED / PRECISION,
# TEST.AMP.ENABLED and MODEL.CHANNELS_LAST; fpn_variants.precision): precision "" is float16 on
# CUDA, bfloat16 on the CPU; eval_enabled evaluates under the same autocast.
train.amp.update(precision="", eval_enabled=False)
# Channels-last on (1.3x faster steps on the CPU, same values); bf16 off: AP parity with float32 is
# not shown for every neck (docs/training_speed.md).
train.channels_last = True
train.checkpointer.period = 100  # SOLVER.CHECKPOINT_PERIOD of configs/Synthetic/Base-*.yaml
# BN statistics recomputed on 32 training batches before each evaluation (TEST.PRECISE_BN).
train.precise_bn = dict(enabled=True, num_iter=32)

# Cosine decay to 0 after a linear warmup of 50 iterations from 0.001 x lr.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
    warmup_length=50 / train.max_iter,  # a fraction of training: set it again with max_iter
    warmup_factor=0.001,
    warmup_method="linear",
)
