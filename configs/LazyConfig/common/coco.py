"""The COCO 2017 recipe of configs/COCO/*_R50_*_1x.yaml: Detectron2's own LazyConfig data loaders,
SGD and 1x schedule (16 images per batch on 8 GPUs, 90k iterations, LR steps at 60k and 80k),
ImageNet-pretrained ResNet-50. Not run on the CPU."""

from detectron2 import model_zoo

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
# Sampled from (800,) as YAML's INPUT.MIN_SIZE_TEST does (Detectron2's file: the range [800, 800]).
dataloader.test.mapper.augmentations[0].sample_style = "choice"
dataloader.test.mapper.use_instance_mask = "${...train.mapper.use_instance_mask}"  # no effect
dataloader.evaluator.tasks = ["bbox"]  # Mask R-CNN adds "segm"
dataloader.evaluator.output_dir = "${...train.output_dir}/inference"

optimizer = model_zoo.get_config("common/optim.py").SGD  # lr 0.02, momentum 0.9, wd 1e-4

lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x

train = model_zoo.get_config("common/train.py").train
train.update(
    output_dir="output/lazyconfig/coco",  # each leaf names its own folder
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    eval_period=0,  # evaluate once, after training
)
# Mixed precision and memory format (the YAML configs' SOLVER.AMP.ENABLED / PRECISION,
# TEST.AMP.ENABLED and MODEL.CHANNELS_LAST; fpn_variants.precision): precision "" is float16 on
# CUDA, bfloat16 on the CPU; eval_enabled evaluates under the same autocast.
train.amp.update(precision="", eval_enabled=False)
train.channels_last = False
