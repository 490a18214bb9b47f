#!/usr/bin/env python
"""Train and evaluate a detector with an fpn_variants neck (Detectron2's command line).

Examples::

    # train Faster R-CNN R18-FPN on the built-in synthetic data (CPU), then evaluate it
    python tools/train_net.py --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml

    # continue an interrupted run from OUTPUT_DIR/last_checkpoint
    python tools/train_net.py --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml --resume

    # evaluate trained weights only
    python tools/train_net.py --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml \\
        --eval-only MODEL.WEIGHTS output/synthetic/faster_rcnn_R18_FPN/model_final.pth

    # your own COCO-format data, registered by path (NUM_CLASSES follows its categories)
    python tools/train_net.py --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml \\
        --dataset-train my_train data/ann/train.json data/train \\
        --dataset-test my_val data/ann/val.json data/val \\
        OUTPUT_DIR output/my_data

    # 2 processes; without CUDA they run on the CPU and talk over GLOO
    python tools/train_net.py --num-gpus 2 --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml

Options: Detectron2's ``--config-file``, ``--resume``, ``--eval-only``, ``--num-gpus``,
``--num-machines``, ``--machine-rank``, ``--dist-url``, plus

  --dist-timeout SECONDS                 with several processes: how long a collective waits
                                         for a process that hangs (default 1800)
  --dataset-train NAME JSON IMAGE_ROOT   register a COCO instances file and train on it
                                         (repeatable; sets DATASETS.TRAIN and NUM_CLASSES)
  --dataset-test NAME JSON IMAGE_ROOT    same for DATASETS.TEST (evaluation)

Anything after the options is a list of config overrides ``KEY VALUE ...`` (so the
``--dataset-*`` options must come before them). The annotation files are validated when
registered: a missing file, malformed JSON, an unknown category id or an empty box is reported
with the file name and the offending entries.
"""

from fpn_variants.engine import run_from_command_line

if __name__ == "__main__":
    run_from_command_line(epilog=__doc__)
