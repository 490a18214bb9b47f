"""StackedCellsNeck: a stem graph, then the same cell repeated with its own weights each time
(BiFPN layers, NAS-FPN cells)."""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from ..layers.conv import build_conv
from ..layers.fusion import build_fusion
from ..layers.graph import EdgeSpec, FusionGraph, NodeSpec
from .base import PyramidNeck

__all__ = ["StackedCellsNeck"]

# (stem output channels) -> (node table, passthrough ids) of the first cell.
FirstCell = Callable[[List[int]], Tuple[List[NodeSpec], Sequence[int]]]


def _default_fusion(index: int, node: NodeSpec, src_levels: List[int]) -> nn.Module:
    return build_fusion(node.fusion, len(node.inputs))


class StackedCellsNeck(PyramidNeck):
    """A neck made of a stem graph over the bottom-up features (projections and extra levels),
    then ``num_repeats`` cells of one node table, cell ``i + 1`` reading the outputs of cell ``i``
    (sorted by level). Every post-fusion block is a 3x3 conv of ``out_channels`` channels.

    Subclasses check their arguments, make the tables and call :meth:`_build_cells`.
    """

    def _build_cells(
        self,
        *,
        stem_nodes: List[NodeSpec],
        stem_edges: Callable[[EdgeSpec], nn.Module],
        cell_nodes: List[NodeSpec],
        cell_edges: Callable[[EdgeSpec], nn.Module],
        num_repeats: int,
        post_conv: Dict,
        stem_passthrough: Sequence[int] = (),
        cell_passthrough: Sequence[int] = (),
        first_cell: Optional[FirstCell] = None,
        make_fusion: Callable[[int, NodeSpec, List[int]], nn.Module] = _default_fusion,
    ) -> None:
        """Build the stem and the cells and install them (:meth:`PyramidNeck._set_graphs`).

        Args:
            stem_nodes, stem_edges, stem_passthrough: the stem's node table over the inputs, its
                edge policy, and the inputs it passes through unchanged.
            cell_nodes, cell_edges, cell_passthrough: the same for every cell, whose inputs are
                the stem's outputs (one per level, from the lowest level).
            num_repeats (int): number of cells.
            post_conv (dict): keyword arguments of :func:`~fpn_variants.layers.conv.build_conv`
                for the 3x3 post-fusion convs.
            first_cell (callable or None): the first cell's table and passthrough ids from the
                stem's output channels, when they differ from the other cells'.
            make_fusion (callable): as :class:`~fpn_variants.layers.graph.FusionGraph`.
        """
        channels = self.out_channels

        def make_post(index: int, node: NodeSpec) -> nn.Module:
            return build_conv(channels, channels, 3, **post_conv)

        def graph(levels, in_channels, nodes, edges, passthrough) -> FusionGraph:
            return FusionGraph(
                levels,
                in_channels,
                nodes,
                channels=channels,
                min_level=self.input_levels[0],
                make_edge=edges,
                make_fusion=make_fusion,
                make_post=make_post,
                passthrough=passthrough,
            )

        stem = graph(
            self.input_levels, self.input_channels, stem_nodes, stem_edges, stem_passthrough
        )
        levels = stem.output_levels
        first_nodes, first_passthrough = cell_nodes, cell_passthrough
        if first_cell is not None:
            first_nodes, first_passthrough = first_cell(stem.output_channels)
        cells = [graph(levels, stem.output_channels, first_nodes, cell_edges, first_passthrough)]
        cells += [
            graph(levels, [channels] * len(levels), cell_nodes, cell_edges, cell_passthrough)
            for _ in range(num_repeats - 1)
        ]
        self._set_graphs(cells, stem=stem, size_divisibility=2 ** levels[-1])
