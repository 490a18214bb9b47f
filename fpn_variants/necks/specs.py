"""Node tables of the four necks, as data (see :class:`fpn_variants.layers.graph.NodeSpec`).

Feature ids: the graph inputs come first (ids 0..n-1, lowest level first), then one id per node
in table order. Every function here returns plain :class:`NodeSpec` lists; the necks decide how an
edge, a fusion and a post block become modules.
"""

from dataclasses import replace
from typing import Dict, List, Sequence, Tuple

from ..layers.graph import NodeSpec

__all__ = [
    "NASFPN_CELL",
    "bifpn_nodes",
    "bottom_up_pyramid_nodes",
    "custom_nodes",
    "extra_level_nodes",
    "finest_level_nodes",
    "fpn_nodes",
    "nasfpn_nodes",
    "pan_nodes",
    "panet_nodes",
    "top_down_nodes_without_laterals",
]

# The NAS-FPN cell found by the architecture search (Ghiasi et al. 2019, figure 7f), as published
# in TF Model Garden `official/vision/modeling/decoders/nasfpn.py` (NASFPN_BLOCK_SPECS):
# (level, fusion, (input a, input b), is_output). Ids 0..4 are P3..P7, new blocks get ids 5..11.
NASFPN_CELL: Tuple[Tuple[int, str, Tuple[int, int], bool], ...] = (
    (4, "global_attention", (1, 3), False),
    (4, "sum", (1, 5), False),
    (3, "sum", (0, 6), True),
    (4, "sum", (6, 7), True),
    (5, "global_attention", (7, 8), True),
    (7, "global_attention", (6, 9), True),
    (6, "global_attention", (9, 10), True),
)


def fpn_nodes(num_inputs: int, min_level: int, fusion: str = "sum") -> List[NodeSpec]:
    """FPN (Lin et al. 2017, section 3): top-down path with laterals, then one output per level.

    Layout for ``n`` inputs C_min..C_max: node 0 is the lateral of C_max; nodes 1..n-1 merge the
    lateral of C_l with the upsampled merge of level l+1 (l = max-1..min); nodes n..2n-1 are the
    3x3 output convs P_min..P_max.
    """
    max_level = min_level + num_inputs - 1
    nodes = [NodeSpec(level=max_level, inputs=(num_inputs - 1,), post=False)]
    merged: Dict[int, int] = {max_level: num_inputs}
    for level in range(max_level - 1, min_level - 1, -1):
        source = level - min_level
        nodes.append(
            NodeSpec(level=level, inputs=(source, merged[level + 1]), fusion=fusion, post=False)
        )
        merged[level] = num_inputs + len(nodes) - 1
    for level in range(min_level, max_level + 1):
        nodes.append(NodeSpec(level=level, inputs=(merged[level],), is_output=True))
    return nodes


def panet_nodes(
    num_inputs: int, min_level: int, fusion: str = "sum", ordering: str = "official"
) -> List[NodeSpec]:
    """PANet (Liu et al. 2018, section 3.1): FPN, then bottom-up path augmentation.

    ``ordering="official"`` follows the paper and ShuLiu1993/PANet ``lib/modeling/FPN.py``:
    N_min = P_min and N_{l+1} = conv3x3(down(N_l) + P_{l+1}), each N_l finished before it is
    downsampled. ``ordering="mmdet"`` follows mmdetection's PAFPN: the running sum
    M_{l+1} = down(M_l) + P_{l+1} is downsampled before its 3x3 conv, N_l = conv3x3(M_l).
    """
    if ordering not in ("official", "mmdet"):
        raise ValueError(f"ordering={ordering!r} is not one of ['official', 'mmdet']")
    nodes = fpn_nodes(num_inputs, min_level, fusion)
    max_level = min_level + num_inputs - 1
    fpn_out = {min_level + i: 2 * num_inputs + i for i in range(num_inputs)}
    # P_min stays an output; P_{min+1}..P_max become intermediate.
    nodes = [replace(n, is_output=n.level == min_level) if n.is_output else n for n in nodes]
    chain = fpn_out[min_level]
    for level in range(min_level + 1, max_level + 1):
        inputs = (chain, fpn_out[level])
        if ordering == "official":
            nodes.append(NodeSpec(level=level, inputs=inputs, fusion=fusion, is_output=True))
            chain = num_inputs + len(nodes) - 1
        else:
            nodes.append(NodeSpec(level=level, inputs=inputs, fusion=fusion, post=False))
            chain = num_inputs + len(nodes) - 1
            nodes.append(NodeSpec(level=level, inputs=(chain,), is_output=True))
    return nodes


def extra_level_nodes(source: int, source_level: int, first_id: int, count: int) -> List[NodeSpec]:
    """``count`` extra levels above ``source_level``: the first reads feature ``source``, each
    next one reads the previous (P6 from P5 or C5, P7 from P6). No post block; all outputs.

    Args:
        first_id (int): the id the first new node will get.
    """
    sources = ([source] + [first_id + i for i in range(count - 1)])[:count]
    return [
        NodeSpec(level=source_level + 1 + i, inputs=(src,), is_output=True, post=False)
        for i, src in enumerate(sources)
    ]


def bifpn_nodes(min_level: int, max_level: int, fusion: str = "fast_normalized") -> List[NodeSpec]:
    """One BiFPN layer (Tan et al. 2020, figure 2d), following automl ``fpn_configs.bifpn_config``.

    Inputs are P_min..P_max (ids 0..n-1). Top-down nodes for levels max-1..min fuse the latest
    feature of their level with the latest of the level above; bottom-up nodes for levels
    min+1..max fuse every feature of their level with the latest of the level below. The latest
    node of each level is an output.
    """
    return _two_way_nodes(min_level, max_level, fusion, same_level_skips=True)


def pan_nodes(min_level: int, max_level: int, fusion: str = "fast_normalized") -> List[NodeSpec]:
    """A PANet-layout layer with weighted fusion (effdet ``panfpn_config``): as :func:`bifpn_nodes`
    but bottom-up nodes fuse only the latest feature of their level (no skip from the input).
    """
    return _two_way_nodes(min_level, max_level, fusion, same_level_skips=False)


def _two_way_nodes(
    min_level: int, max_level: int, fusion: str, same_level_skips: bool
) -> List[NodeSpec]:
    num_inputs = max_level - min_level + 1
    ids_by_level: Dict[int, List[int]] = {min_level + i: [i] for i in range(num_inputs)}
    table = []
    for level in range(max_level - 1, min_level - 1, -1):
        table.append((level, [ids_by_level[level][-1], ids_by_level[level + 1][-1]]))
        ids_by_level[level].append(num_inputs + len(table) - 1)
    for level in range(min_level + 1, max_level + 1):
        same_level = ids_by_level[level] if same_level_skips else ids_by_level[level][-1:]
        table.append((level, same_level + [ids_by_level[level - 1][-1]]))
        ids_by_level[level].append(num_inputs + len(table) - 1)
    nodes, _ = custom_nodes(table, min_level, max_level, fusion)
    return nodes


def custom_nodes(
    table: Sequence[Tuple[int, Sequence[int]]], min_level: int, max_level: int, fusion: str
) -> Tuple[List[NodeSpec], List[int]]:
    """A node table from (level, inputs) rows over inputs P_min..P_max (ids 0..n-1).

    The latest feature of each level is the output at that level. Returns the nodes and the
    input ids that pass through unchanged (levels no node writes to).
    """
    num_inputs = max_level - min_level + 1
    latest = {min_level + i: i for i in range(num_inputs)}
    for k, (level, _) in enumerate(table):
        if level not in latest:
            raise ValueError(
                f"node {k} has level {level}, outside the neck's levels {min_level}..{max_level}"
            )
        latest[level] = num_inputs + k
    outputs = set(latest.values())
    nodes = [
        NodeSpec(
            level=level,
            inputs=tuple(inputs),
            fusion=fusion,
            is_output=(num_inputs + k) in outputs,
        )
        for k, (level, inputs) in enumerate(table)
    ]
    return nodes, sorted(i for i in outputs if i < num_inputs)


def nasfpn_nodes(
    blocks: Sequence[Tuple[int, str, Sequence[int], bool]], input_levels: Sequence[int]
) -> List[NodeSpec]:
    """Turn NAS-FPN block specs (level, fusion, inputs, is_output) into a node table.

    Applies the authors' rule (TF Model Garden ``_build_feature_pyramid``): an output block also
    adds every earlier feature of its level that no block has consumed yet, as a residual.
    """
    levels = list(input_levels)
    consumed = [False] * len(levels)
    nodes = []
    for level, fusion, inputs, is_output in blocks:
        for source in inputs:
            if not 0 <= source < len(levels):
                raise ValueError(
                    f"NAS-FPN block {len(nodes)} reads feature {source}, but only ids "
                    f"0..{len(levels) - 1} exist at that point"
                )
            consumed[source] = True
        residuals = []
        if is_output:
            residuals = [j for j, lvl in enumerate(levels) if lvl == level and not consumed[j]]
            for j in residuals:
                consumed[j] = True
        nodes.append(
            NodeSpec(
                level=level,
                inputs=tuple(inputs),
                fusion=fusion,
                is_output=is_output,
                residuals=tuple(residuals),
            )
        )
        levels.append(level)
        consumed.append(False)
    return nodes


# The FPN paper's ablations (Lin et al. 2017, Table 3), laid out over the same inputs as
# :func:`fpn_nodes`; the FPN's edge policy gives each input read at its own level a 1x1 lateral.
def bottom_up_pyramid_nodes(num_inputs: int, min_level: int) -> List[NodeSpec]:
    """Table 3(d), "bottom-up pyramid": each level is its own bottom-up feature through a 1x1
    lateral and the 3x3 output conv, without the top-down path."""
    return [NodeSpec(level=min_level + i, inputs=(i,), is_output=True) for i in range(num_inputs)]


def top_down_nodes_without_laterals(num_inputs: int, min_level: int) -> List[NodeSpec]:
    """Table 3(e), "top-down pyramid, w/o lateral": the coarsest input through its 1x1 conv, then
    upsampled level by level with nothing merged in; a 3x3 output conv at every level."""
    max_level = min_level + num_inputs - 1
    nodes = [NodeSpec(level=max_level, inputs=(num_inputs - 1,), post=False)]
    for level in range(max_level - 1, min_level - 1, -1):
        nodes.append(NodeSpec(level=level, inputs=(num_inputs + len(nodes) - 1,), post=False))
    top_down = {max_level - k: num_inputs + k for k in range(num_inputs)}
    nodes += [
        NodeSpec(level=level, inputs=(top_down[level],), is_output=True)
        for level in range(min_level, max_level + 1)
    ]
    return nodes


def finest_level_nodes(num_inputs: int, min_level: int, fusion: str = "sum") -> List[NodeSpec]:
    """Table 3(f), "only finest level": the FPN's top-down path with its laterals, and only the
    output of the finest level (P2 over C2-C5)."""
    nodes = fpn_nodes(num_inputs, min_level, fusion)
    return nodes[: len(nodes) - num_inputs + 1]
