"""Node tables of the four necks, as data (see :class:`fpn_variants.layers.graph.NodeSpec`).

Feature ids: the graph inputs come first (ids 0..n-1, lowest level first), then one id per node
in table order. Every function here returns plain :class:`NodeSpec` lists; the necks decide how an
edge, a fusion and a post block become modules.
"""

from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..layers.graph import NodeSpec
from .options import OptionError

__all__ = [
    "BIFPN_ROW",
    "NASFPN_CELL",
    "NASFPN_ROW",
    "PANET_ORDERINGS",
    "bifpn_nodes",
    "bottom_up_pyramid_nodes",
    "custom_nodes",
    "extra_level_nodes",
    "finest_level_nodes",
    "fpn_nodes",
    "nasfpn_nodes",
    "pan_nodes",
    "panet_nodes",
    "parse_bifpn_rows",
    "parse_nasfpn_rows",
    "top_down_nodes_without_laterals",
]

# What a row of a custom table looks like, quoted by the errors about one.
BIFPN_ROW = "[level, [input ids]], e.g. [4, [1, 2]]"
NASFPN_ROW = (
    "[level, 'sum' or 'global_attention', [id a, id b], is_output], e.g. [4, 'sum', [1, 5], True]"
)

# PANet's path orderings (:func:`panet_nodes`); PANet's ``ordering`` option checks the name.
PANET_ORDERINGS = ("official", "mmdet")

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


def parse_bifpn_rows(
    rows: Any, key: str = "MODEL.BIFPN.NODES", switch: str = "MODEL.BIFPN.TOPOLOGY='custom'"
) -> List[Tuple[int, Tuple[int, ...]]]:
    """Check the form of the custom BiFPN table ``key`` (rows ``[level, [input ids]]``, read under
    ``switch``) and return them as tuples. Raises ValueError naming the row and what a valid row
    looks like."""
    return _checked_rows(rows, key, switch, BIFPN_ROW, [_LEVEL, _INPUTS])


def parse_nasfpn_rows(
    rows: Any, key: str = "MODEL.NASFPN.BLOCKS", switch: str = "MODEL.NASFPN.CELL='custom'"
) -> List[Tuple[int, str, Tuple[int, ...], bool]]:
    """Check the form of the custom NAS-FPN cell ``key`` (rows ``[level, fusion, [input ids],
    is_output]``, read under ``switch``) and return them as tuples. A "global_attention" merges
    exactly 2 inputs, a "sum" one or more. Raises ValueError naming the row and what a valid row
    looks like."""
    fusion = (
        lambda v: v in ("sum", "global_attention"),
        "the fusion must be 'sum' or 'global_attention'",
    )
    is_output = (lambda v: isinstance(v, bool), "is_output must be True or False")
    blocks = _checked_rows(rows, key, switch, NASFPN_ROW, [_LEVEL, fusion, _INPUTS, is_output])
    for k, (_, op, inputs, _) in enumerate(blocks):
        if op == "global_attention" and len(inputs) != 2:
            reason = "'global_attention' merges exactly 2 inputs"
            raise _row_error(key, k, rows[k], reason, NASFPN_ROW)
    return blocks


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id_list(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(_is_int(v) and v >= 0 for v in value)
    )


# Checks of the items of a row: (test, what a failing item should be).
_LEVEL = (_is_int, "the level must be an integer")
_INPUTS = (_is_id_list, "the input ids must be a non-empty list of integers >= 0")


def _checked_rows(
    rows: Any, key: str, switch: str, form: str, checks: Sequence[Tuple[Callable, str]]
) -> List[tuple]:
    """The rows of the custom table ``key`` (read under ``switch``) as tuples, after checking that
    it is a non-empty list of lists, each with one item per check, and that every item passes."""
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError(
            f"{switch} needs {key}, a non-empty list of rows, not {rows!r}. A row is {form}"
        )
    parsed = []
    for k, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(checks):
            raise _row_error(key, k, row, f"it must be a list of {len(checks)} items", form)
        for item, (test, reason) in zip(row, checks):
            if not test(item):
                raise _row_error(key, k, row, reason, form)
        parsed.append(tuple(tuple(v) if isinstance(v, list) else v for v in row))
    return parsed


def _row_error(key: str, index: int, row: Any, reason: str, form: str) -> ValueError:
    return ValueError(
        f"{key}[{index}]={_plain(row)!r} is not a valid row: {reason}. A row is {form}"
    )


def _plain(row: Any) -> Any:
    """A row as written in YAML (lists, not tuples), for messages."""
    if isinstance(row, (list, tuple)):
        return [_plain(v) for v in row]
    return row


def _check_sources(arg: str, k: int, row: Any, sources: Sequence[int], levels: Sequence[int]):
    """Raise OptionError if row ``k`` of the table ``arg`` over ``levels`` (its inputs) reads a
    feature that does not exist before it."""
    n = len(levels)
    for source in sources:
        if not 0 <= source < n + k:
            raise OptionError(
                lambda name: f"{name(arg)}[{k}]={_plain(row)!r} reads feature {source}, but only "
                f"ids 0..{n + k - 1} exist before it (0..{n - 1}: the inputs "
                f"P{levels[0]}..P{levels[-1]}, row j: {n} + j)"
            )


def _check_level(arg: str, k: int, row: Any, level: int, levels: Sequence[int]) -> None:
    if level not in levels:
        raise OptionError(
            lambda name: f"{name(arg)}[{k}]={_plain(row)!r} has level {level}, outside the "
            f"neck's levels {levels[0]}..{levels[-1]}"
        )


def custom_nodes(
    table: Sequence[Tuple[int, Sequence[int]]], min_level: int, max_level: int, fusion: str
) -> Tuple[List[NodeSpec], List[int]]:
    """A node table from (level, inputs) rows (BiFPN's ``nodes``, ``MODEL.BIFPN.NODES``, see
    :func:`parse_bifpn_rows`) over inputs P_min..P_max (ids 0..n-1).

    The latest feature of each level is the output at that level. Returns the nodes and the
    input ids that pass through unchanged (levels no node writes to). Raises OptionError (naming
    ``nodes``) for a row at a level outside min..max or reading a feature that does not exist
    before it.
    """
    levels = list(range(min_level, max_level + 1))
    num_inputs = len(levels)
    latest = {level: i for i, level in enumerate(levels)}
    for k, (level, inputs) in enumerate(table):
        _check_level("nodes", k, (level, inputs), level, levels)
        _check_sources("nodes", k, (level, inputs), inputs, levels)
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
    Raises OptionError (naming NAS-FPN's ``blocks``) for a block at a level outside
    ``input_levels`` or reading a feature that does not exist before it, and unless the output
    blocks are one per level (they are the next cell's inputs).
    """
    key = "blocks"
    levels = list(input_levels)
    consumed = [False] * len(levels)
    nodes = []
    for k, (level, fusion, inputs, is_output) in enumerate(blocks):
        row = (level, fusion, inputs, is_output)
        _check_level(key, k, row, level, input_levels)
        _check_sources(key, k, row, inputs, input_levels)
        for source in inputs:
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
    outputs = Counter(node.level for node in nodes if node.is_output)
    missing = [lvl for lvl in input_levels if outputs[lvl] == 0]
    several = [lvl for lvl in input_levels if outputs[lvl] > 1]
    if missing or several:
        raise OptionError(
            lambda name: f"{name(key)}: a cell needs one output block (is_output True) per level "
            f"{input_levels[0]}..{input_levels[-1]}; levels without one: {missing}, levels with "
            f"several: {several}"
        )
    return nodes


# The FPN paper's ablations (Lin et al. 2017, Tables 1-3), laid out over the same inputs as
# :func:`fpn_nodes`; the FPN's edge policy gives each input read at its own level a 1x1 lateral.
def bottom_up_pyramid_nodes(num_inputs: int, min_level: int) -> List[NodeSpec]:
    """Table 2 (d), "bottom-up pyramid": each level is its own bottom-up feature through a 1x1
    lateral and the 3x3 output conv, without the top-down path."""
    return [NodeSpec(level=min_level + i, inputs=(i,), is_output=True) for i in range(num_inputs)]


def top_down_nodes_without_laterals(num_inputs: int, min_level: int) -> List[NodeSpec]:
    """Table 2 (e), "top-down pyramid, w/o lateral": the coarsest input through its 1x1 conv, then
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
    """Table 2 (f), "only finest level": the FPN's top-down path with its laterals, and only the
    output of the finest level (P2 over C2-C5)."""
    nodes = fpn_nodes(num_inputs, min_level, fusion)
    return nodes[: len(nodes) - num_inputs + 1]
