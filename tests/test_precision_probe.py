"""benchmarks/precision_probe.py: its measures (relative error over a part's tensors, the part a
parameter belongs to, the share of proposals that moved)."""

import pytest
import torch

from .utils import load_tool


@pytest.fixture(scope="module")
def probe():
    return load_tool("precision_probe", folder="benchmarks")


def test_relative_error_is_over_all_tensors_of_a_part(probe):
    reference = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]  # norm 5
    ours = [torch.tensor([3.0, 0.3]), torch.tensor([[4.4]])]  # difference norm 0.5
    assert probe.relative_error(ours, reference) == pytest.approx(0.1)
    assert probe.relative_error(reference, reference) == 0


def test_parts_are_the_bottom_up_each_neck_stage_and_the_heads(probe):
    assert probe.part_of("backbone.bottom_up.res2.0.conv1.weight") == "backbone.bottom_up"
    assert probe.part_of("backbone.cells.3.nodes.0.post.weight") == "backbone.cells.3"
    assert probe.part_of("backbone.stem.nodes.1.edges.0.weight") == "backbone.stem"
    assert probe.part_of("roi_heads.box_head.fc1.weight") == "roi_heads"


def test_moved_share_matches_boxes_within_the_tolerance_in_any_order(probe):
    reference = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])]
    same_reordered = [torch.tensor([[5.0, 5.5, 20.0, 20.0], [0.0, 0.0, 10.0, 10.0]])]
    one_moved = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 22.0, 20.0]])]
    assert probe.moved_share(same_reordered, reference) == 0
    assert probe.moved_share(one_moved, reference) == 0.5
