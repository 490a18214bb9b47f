"""The linear probe of the class per feature (fpn_variants/probe.py, tools/probe_levels.py):
exact pooling, a probe that finds a linear rule and not noise, every box and level of a run."""

import argparse
import os

import pytest
import torch
from detectron2.data import DatasetCatalog

from fpn_variants.probe import IMAGE, _pool, fit_probe, probe_accuracy

from .utils import builtin_data_in, load_tool, train_few_iterations


def test_pooling_a_box_on_pixel_edges_is_the_mean_of_its_pixels():
    feature = torch.randn(1, 5, 20, 24)
    # 14 px = 7 bins of 2 px: RoIAlign's 2x2 samples per bin fall on pixel centres.
    pooled = _pool(feature, torch.tensor([[2.0, 4.0, 16.0, 18.0]]), stride=1)
    assert torch.allclose(pooled[0], feature[0, :, 4:18, 2:16].mean(dim=(1, 2)), atol=1e-6)
    # On a stride-4 map the same box covers 3.5 x 3.5 cells, and pooling stays inside the map.
    coarse = _pool(feature, torch.tensor([[8.0, 8.0, 22.0, 22.0]]), stride=4)
    assert coarse.shape == (1, 5)


def test_the_probe_learns_a_linear_rule_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=generator)
    rule = x[:, :3].argmax(dim=1)  # 3 classes, a linear rule of the first 3 features
    classifier = fit_probe(x[:400], rule[:400], num_classes=3)
    assert probe_accuracy(classifier, x[400:], rule[400:]) > 0.95
    noise = torch.randint(0, 3, (600,), generator=generator)
    classifier = fit_probe(x[:400], noise[:400], num_classes=3)
    assert probe_accuracy(classifier, x[400:], noise[400:]) < 0.5


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    with builtin_data_in(tmp_path_factory.mktemp("probe_data"), 4, 2):
        run_dir = tmp_path_factory.mktemp("runs") / "faster_rcnn_fpn" / "seed1"
        train_few_iterations(run_dir)
        yield str(run_dir)


def test_every_box_is_probed_on_the_image_and_every_level_of_a_run(tiny_run):
    tool = load_tool("probe_levels")
    datasets = ("synthetic_multiscale_train", "synthetic_multiscale_val")
    results = tool.probe_run(tiny_run, datasets, (4, 2))
    levels = ["res2", "res3", "res4", "res5", "p2", "p3", "p4", "p5", "p6"]
    assert list(results) == [IMAGE, *levels]
    channels = [r.channels for r in results.values()]
    assert channels == [3, 64, 128, 256, 512, 64, 64, 64, 64, 64]
    val_boxes = sum(len(r["annotations"]) for r in DatasetCatalog.get(datasets[1]))
    for result in results.values():
        assert 0 <= result.accuracy <= 1
        assert sum(count for _, count in result.by_size.values()) == val_boxes
    args = argparse.Namespace(train_images=4, test_images=2)
    page = tool.render({tool._run_label(tiny_run): results}, args)
    assert page.startswith("Generated at commit `")
    rows = [line for line in page.splitlines() if line.startswith("| faster_rcnn_fpn/seed1 |")]
    assert len(rows) == 2 and all(row.count("|") == 12 for row in rows)


def test_a_folder_without_weights_is_refused_with_what_to_give(tiny_run, tmp_path):
    tool = load_tool("probe_levels")
    os.symlink(os.path.join(tiny_run, "config.yaml"), tmp_path / "config.yaml")
    with pytest.raises(SystemExit, match="no model_final.pth: give a finished run's folder"):
        tool.probe_run(str(tmp_path), ("a", "b"), (1, 1))
