"""The one engine every neck runs: a node table evaluated over a growing list of features.

A graph starts from input features (ids 0..n-1, each at a known pyramid level). Node ``k`` gets id
``n + k``: it resamples each of its inputs to its own level, fuses them, adds its residual inputs,
applies its post-fusion block and appends the result. The graph returns its passthrough inputs and
its output nodes, one per level, sorted by level. A neck is a table of :class:`NodeSpec` plus the
policies that turn an edge, a fusion and a post block into modules.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["EdgeSpec", "FusionGraph", "FusionNode", "NodeSpec"]


@dataclass(frozen=True)
class NodeSpec:
    """One row of a node table.

    Attributes:
        level (int): output pyramid level (stride 2**level).
        inputs (tuple[int]): ids of the features it fuses (graph inputs first, then nodes).
        fusion (str): fusion op, see :data:`fpn_variants.layers.fusion.FUSIONS`.
        is_output (bool): whether the node is one of the graph's outputs.
        post (bool): whether a post-fusion block (e.g. a 3x3 conv) follows the fusion.
        residuals (tuple[int]): ids of same-level features added after the fusion (NAS-FPN adds
            the not-yet-consumed features of an output block's level).
    """

    level: int
    inputs: Tuple[int, ...]
    fusion: str = "sum"
    is_output: bool = False
    post: bool = True
    residuals: Tuple[int, ...] = ()


@dataclass(frozen=True)
class EdgeSpec:
    """What an edge policy needs to build the resampler of one node input.

    Attributes:
        node (int): index of the node in its table.
        src_level (int), dst_level (int): pyramid levels of the input and of the node.
        in_channels (int), out_channels (int): channels of the input and of the node.
        from_input (bool): whether the input is a graph input (e.g. a bottom-up feature) rather
            than a node of this graph.
    """

    node: int
    src_level: int
    dst_level: int
    in_channels: int
    out_channels: int
    from_input: bool


class FusionNode(nn.Module):
    """Resample each input to the node's level, fuse, add residuals, apply the post block.

    Shapes: inputs at their levels -> (N, C, H_l, W_l) at level l.
    """

    input_ids: List[int]
    residual_ids: List[int]
    level_index: torch.jit.Final[int]

    def __init__(
        self,
        input_ids: Sequence[int],
        residual_ids: Sequence[int],
        level_index: int,
        edges: Sequence[nn.Module],
        fusion: nn.Module,
        post: Optional[nn.Module],
    ):
        super().__init__()
        self.input_ids = list(input_ids)
        self.residual_ids = list(residual_ids)
        self.level_index = level_index
        self.edges = nn.ModuleList(edges)
        self.fusion = fusion
        self.post = post if post is not None else nn.Identity()

    def forward(self, feats: List[torch.Tensor], sizes: List[List[int]]) -> torch.Tensor:
        size = sizes[self.level_index]
        xs: List[torch.Tensor] = []
        for i, edge in enumerate(self.edges):
            xs.append(edge(feats[self.input_ids[i]], size))
        out = self.fusion(xs)
        for j in self.residual_ids:
            out = out + feats[j]
        return self.post(out)


class FusionGraph(nn.Module):
    """A node table turned into modules and run in order.

    Args:
        input_levels (list[int]): level of each graph input, contiguous and increasing.
        input_channels (list[int]): channels of each graph input.
        nodes (list[NodeSpec]): the table.
        channels (int): channels of every node output.
        min_level (int): level of ``sizes[0]`` in :meth:`forward`.
        make_edge (callable): EdgeSpec -> resampler module with ``forward(x, size)``.
        make_fusion (callable): (node index, NodeSpec, source levels) -> fusion module.
        make_post (callable): (node index, NodeSpec) -> post-fusion module (for ``post=True``).
        passthrough (list[int]): graph inputs returned unchanged among the outputs.

    Forward: ``feats`` (one tensor per input) and ``sizes`` ([H, W] of every level from
    ``min_level``) -> list of outputs sorted by level, one per level.
    """

    output_ids: List[int]

    def __init__(
        self,
        input_levels: Sequence[int],
        input_channels: Sequence[int],
        nodes: Sequence[NodeSpec],
        *,
        channels: int,
        min_level: int,
        make_edge: Callable[[EdgeSpec], nn.Module],
        make_fusion: Callable[[int, NodeSpec, List[int]], nn.Module],
        make_post: Callable[[int, NodeSpec], nn.Module],
        passthrough: Sequence[int] = (),
    ):
        super().__init__()
        levels = list(input_levels)
        feature_channels = list(input_channels)
        num_inputs = len(levels)
        modules = []
        for k, spec in enumerate(nodes):
            _check_sources(k, spec, levels)
            edges = [
                make_edge(
                    EdgeSpec(
                        node=k,
                        src_level=levels[source],
                        dst_level=spec.level,
                        in_channels=feature_channels[source],
                        out_channels=channels,
                        from_input=source < num_inputs,
                    )
                )
                for source in spec.inputs
            ]
            fusion = make_fusion(k, spec, [levels[s] for s in spec.inputs])
            post = make_post(k, spec) if spec.post else None
            modules.append(
                FusionNode(spec.inputs, spec.residuals, spec.level - min_level, edges, fusion, post)
            )
            levels.append(spec.level)
            feature_channels.append(channels)
        self.nodes = nn.ModuleList(modules)

        outputs = list(passthrough) + [num_inputs + k for k, s in enumerate(nodes) if s.is_output]
        by_level = _one_output_per_level(outputs, levels)
        self.output_ids = [by_level[lvl] for lvl in sorted(by_level)]
        self.output_levels = sorted(by_level)
        self.output_channels = [feature_channels[i] for i in self.output_ids]

    def forward(self, feats: List[torch.Tensor], sizes: List[List[int]]) -> List[torch.Tensor]:
        all_feats: List[torch.Tensor] = []
        all_feats.extend(feats)
        for node in self.nodes:
            all_feats.append(node(all_feats, sizes))
        return [all_feats[i] for i in self.output_ids]


def _check_sources(k: int, spec: NodeSpec, levels: List[int]) -> None:
    """Raise ValueError when node ``k`` reads a feature that does not exist yet (``levels``:
    the level of each feature so far) or adds a residual of another level."""
    node_id = len(levels)
    for source in spec.inputs + spec.residuals:
        if not 0 <= source < node_id:
            raise ValueError(
                f"node {k} (id {node_id}) reads feature {source}, which does not exist "
                f"yet: ids 0..{node_id - 1} are available"
            )
    for source in spec.residuals:
        if levels[source] != spec.level:
            raise ValueError(
                f"node {k} adds residual feature {source} of level {levels[source]} "
                f"to its own level {spec.level}; residuals must be of the same level"
            )


def _one_output_per_level(outputs: List[int], levels: List[int]) -> Dict[int, int]:
    """Level -> the output feature id at that level; ValueError if a level has two."""
    by_level: Dict[int, int] = {}
    for i in outputs:
        if levels[i] in by_level:
            raise ValueError(f"the node table has two outputs at level {levels[i]}")
        by_level[levels[i]] = i
    return by_level
