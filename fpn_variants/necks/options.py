"""The necks' options, each declared once.

An :class:`Option` is one keyword argument of a neck's constructor and one config key: its type,
default, valid values, one-line doc and the paper's value. From the declarations come the keys
``fpn_variants.config.add_fpn_variants_config`` adds, each neck's ``from_config``, the argument
checks (the same from YAML, LazyConfig and Python; messages name the config key when the neck is
built from a config, the argument otherwise) and the README's option tables. The constructors'
keyword defaults are the declared ones (``tests/test_options.py`` keeps them equal).

This module also reads the replaced ``MODEL.FPN.TOP_BLOCK`` of older configs (the only place that
knows its strings).
"""

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence, Tuple

from detectron2.utils.logger import log_first_n

from ..layers.conv import ACTIVATIONS, NORMS

__all__ = [
    "EXTRA_LEVEL_TYPES",
    "EXTRA_LEVEL_TYPE",
    "NUM_EXTRA_LEVELS",
    "OUT_CHANNELS",
    "Names",
    "Option",
    "OptionError",
    "activation_option",
    "check_choice",
    "check_group_norm_width",
    "check_pooled_extra_levels",
    "check_table_is_read",
    "check_type",
    "extra_levels",
    "norm_option",
    "pooled_extra_level_options",
]

# How a caller named an option in a message: argument name -> the name it used.
Names = Callable[[str], str]

# Default of the necks' own norm keys (MODEL.BIFPN.NORM, MODEL.NASFPN.NORM): their papers'.
_PAPER_NORM = "BN"


@dataclass(frozen=True)
class Option:
    """One option of a neck: a keyword argument of its constructor and a config key.

    Attributes:
        arg (str): the constructor's argument, e.g. "num_repeats".
        key (str): the config key under ``MODEL``, e.g. "BIFPN.NUM_REPEATS".
        type (type): bool, int, str or list (a tuple is a list; a bool is not an int).
        default: the default of the argument and of the key.
        doc (str): one line: what it does.
        paper (str): the paper's (or reference's) value, as the README shows it.
        choices (tuple): the valid values, when they are a list.
        minimum (int or None): the smallest valid value of an int.
        read (callable or None): cfg -> value, when the key is not read as is (older keys).
        detectron2 (bool): the key is Detectron2's own (``get_cfg`` adds it, not us).
    """

    arg: str
    key: str
    type: type
    default: Any
    doc: str
    paper: str
    choices: Tuple = ()
    minimum: Optional[int] = None
    read: Optional[Callable[[Any], Any]] = None
    detectron2: bool = False

    @property
    def config_key(self) -> str:
        return f"MODEL.{self.key}"

    @property
    def config_default(self) -> Any:
        """The default as a yacs value (lists, not tuples)."""
        return list(self.default) if self.type is list else self.default

    def from_config(self, cfg) -> Any:
        if self.read is not None:
            return self.read(cfg)
        node, leaf = self.key.split(".")
        return cfg.MODEL[node][leaf]

    def check(self, value: Any, name: str) -> None:
        """Raise TypeError / ValueError naming ``name``, the bad value and what is valid."""
        check_type(name, value, self.type)
        if self.choices:
            check_choice(name, value, self.choices)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{name}={value} must be at least {self.minimum}")


class OptionError(ValueError):
    """A bad option found while a neck is built (it needs the bottom-up network's levels or the
    node table), worded with the constructor's arguments; the builders re-raise it with the
    config keys (:meth:`in_config_terms`).

    Args:
        message (callable): (argument -> its name) -> the message.
    """

    def __init__(self, message: Callable[[Names], str]):
        self.message = message
        super().__init__(message(lambda arg: arg))

    def in_config_terms(self, keys: Names) -> ValueError:
        return ValueError(self.message(keys))


def check_choice(key: str, value, choices: Sequence) -> None:
    """Raise ValueError naming the key, the bad value and the valid choices."""
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not one of {list(choices)}")


# How a type is named in a message.
_TYPE_NAMES = {bool: "True or False", int: "an integer", str: "a string", list: "a list"}


def check_type(key: str, value, expected: type) -> None:
    """Raise TypeError naming the key, the bad value and the expected type (a bool is not an
    integer here; a tuple is a list)."""
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is list:
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, expected)
    if not ok:
        name = _TYPE_NAMES.get(expected, expected.__name__)
        raise TypeError(f"{key}={value!r} must be {name}, not {type(value).__name__}")


def check_table_is_read(table_key: str, table, switch_key: str, switch: str) -> None:
    """Raise ValueError when a custom table is given while the topology ``switch_key`` is not
    "custom" (the table would be ignored)."""
    if switch != "custom" and len(table) > 0:
        raise ValueError(
            f"{table_key} is only read with {switch_key}='custom', but {switch_key}={switch!r}: "
            f"remove {table_key} or set {switch_key} to 'custom'"
        )


def check_group_norm_width(norm: str, channels: int, name: Names) -> None:
    """Raise ValueError when group norm (Detectron2's "GN": 32 groups) gets a width it cannot
    normalise: ``nn.GroupNorm(32, C)`` needs C a multiple of 32, and with C = 32 each group is one
    channel normalised over its own map alone, which on a 1 x 1 map (a level whose stride is at
    least the image size, e.g. P7 of a 128 px image) leaves one value: the output is the bias
    only, and PyTorch refuses it in training on one image ("Expected more than 1 value per
    channel")."""
    if norm == "GN" and (channels % 32 != 0 or channels < 64):
        width = name("out_channels")
        raise ValueError(
            f"{name('norm')}='GN' uses 32 groups, so {width}={channels} must be a multiple of 32 "
            "and at least 64 (two channels per group: with one, a 1 x 1 level has a single value "
            f"per group and normalises to its bias): set {width} to 64, 96, ... or choose "
            "another norm"
        )


# MODEL.FPN.EXTRA_LEVEL_TYPE: how the levels above the last input are made.
EXTRA_LEVEL_TYPES = ("maxpool", "conv")
# (NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE) that the replaced MODEL.FPN.TOP_BLOCK meant, by whether the
# neck pools its extra levels (BiFPN, NAS-FPN read "p6p7" as two pooled levels).
_OLD_TOP_BLOCKS = {
    False: {"maxpool": (1, "maxpool"), "p6p7": (2, "conv"), "": (0, "maxpool")},
    True: {"maxpool": (1, "maxpool"), "p6p7": (2, "maxpool"), "": (0, "maxpool")},
}


def extra_levels(cfg, pooled: bool) -> Tuple[Any, Any]:
    """(MODEL.FPN.NUM_EXTRA_LEVELS, MODEL.FPN.EXTRA_LEVEL_TYPE), or what the replaced
    MODEL.FPN.TOP_BLOCK of an older config means for this neck (``pooled``: BiFPN, NAS-FPN), when
    it is set and the two keys are at their defaults or agree with it (one warning, logged once).
    """
    fpn = cfg.MODEL.FPN
    num, kind = fpn.NUM_EXTRA_LEVELS, fpn.EXTRA_LEVEL_TYPE
    old = fpn.get("TOP_BLOCK")
    if old is None:
        return num, kind
    check_choice("MODEL.FPN.TOP_BLOCK", old, list(_OLD_TOP_BLOCKS[pooled]))
    meant = _OLD_TOP_BLOCKS[pooled][old]
    same = num == meant[0] and (num == 0 or kind == meant[1])
    replaced = (
        f"MODEL.FPN.TOP_BLOCK={old!r} is replaced by MODEL.FPN.NUM_EXTRA_LEVELS={meant[0]}"
        + (f" and MODEL.FPN.EXTRA_LEVEL_TYPE={meant[1]!r}" if meant[0] else "")
        + " for this neck"
    )
    if not same and (num, kind) != (NUM_EXTRA_LEVELS.default, EXTRA_LEVEL_TYPE.default):
        raise ValueError(
            f"{replaced}, but they are set to {num} and {kind!r}: remove MODEL.FPN.TOP_BLOCK"
        )
    message = f"{replaced}: set these keys and remove MODEL.FPN.TOP_BLOCK from the config"
    log_first_n(logging.WARNING, message, n=1, name=__name__, key="message")
    return meant


def _variant_norm(node: str) -> Callable[[Any], str]:
    """The reader of MODEL.<node>.NORM (BiFPN, NAS-FPN; default "BN", their papers'). Older
    configs set MODEL.FPN.NORM for them: it is used when MODEL.<node>.NORM is at its default; set
    to another value, the two must agree (or MODEL.FPN.NORM be "")."""

    def read(cfg) -> str:
        own, shared = cfg.MODEL[node].NORM, cfg.MODEL.FPN.NORM
        if shared in ("", own):
            return own
        if own != _PAPER_NORM:
            raise ValueError(
                f"MODEL.{node}.NORM={own!r} is this neck's norm, but MODEL.FPN.NORM={shared!r}: "
                f"remove MODEL.FPN.NORM (or set it to '')"
            )
        log_first_n(
            logging.WARNING,
            f"MODEL.FPN.NORM={shared!r} used as MODEL.{node}.NORM, which replaces it for this "
            f"neck: set MODEL.{node}.NORM: {shared!r} and remove MODEL.FPN.NORM from the config",
            n=1,
            name=__name__,
            key="message",
        )
        return shared

    return read


def norm_option(node: str, doc: str, paper: str) -> Option:
    """The norm of a neck: MODEL.FPN.NORM (Detectron2's, default "") or the neck's own
    MODEL.<node>.NORM (default "BN", read with an older config's MODEL.FPN.NORM)."""
    if node == "FPN":
        return Option("norm", "FPN.NORM", str, "", doc, paper, NORMS, detectron2=True)
    return Option(
        "norm", f"{node}.NORM", str, _PAPER_NORM, doc, paper, NORMS, read=_variant_norm(node)
    )


def activation_option(node: str, default: str, doc: str) -> Option:
    return Option(
        "activation", f"{node}.ACTIVATION", str, default, doc, f'"{default}"', ACTIVATIONS
    )


# Options every neck shares, on Detectron2's MODEL.FPN node.
OUT_CHANNELS = Option(
    "out_channels", "FPN.OUT_CHANNELS", int, 256, "channels of every output level", "256",
    minimum=1, detectron2=True,
)  # fmt: skip
NUM_EXTRA_LEVELS = Option(
    "num_extra_levels", "FPN.NUM_EXTRA_LEVELS", int, 1,
    "levels above the last input: 1 (P6, R-CNNs), 2 (P6, P7, RetinaNet) or 0",
    "1 (R-CNNs), 2 (RetinaNet)", minimum=0, read=lambda cfg: extra_levels(cfg, pooled=False)[0],
)  # fmt: skip
EXTRA_LEVEL_TYPE = Option(
    "extra_level_type", "FPN.EXTRA_LEVEL_TYPE", str, "maxpool",
    'how they are made: "maxpool" (max-pooling of the level below) or "conv" (stride-2 3x3 '
    "convs, ReLU before the second: RetinaNet's P6/P7)",
    '"maxpool" (R-CNNs), "conv" (RetinaNet)', EXTRA_LEVEL_TYPES,
    read=lambda cfg: extra_levels(cfg, pooled=False)[1],
)  # fmt: skip


def pooled_extra_level_options(neck: str) -> Tuple[Option, Option]:
    """NUM_EXTRA_LEVELS and EXTRA_LEVEL_TYPE of a neck that max-pools its extra levels from its
    last input, as its reference does (BiFPN, NAS-FPN): an older config's "p6p7" is 2 pooled
    levels, and MODEL.FPN.TOP_BLOCK_IN must stay at its default or name the last input."""

    def read_number(cfg) -> Any:
        source, last = cfg.MODEL.FPN.TOP_BLOCK_IN, cfg.MODEL.FPN.IN_FEATURES[-1]
        if source not in ("", "res5", last):
            raise ValueError(
                f"MODEL.FPN.TOP_BLOCK_IN={source!r} is not supported by {neck}: it makes its "
                "extra levels from the last input feature, as its reference does"
            )
        return extra_levels(cfg, pooled=True)[0]

    number = replace(NUM_EXTRA_LEVELS, paper="2 (P6, P7)", read=read_number)
    kind = replace(
        EXTRA_LEVEL_TYPE,
        doc='how they are made: "maxpool" only (max-pooling, as the reference)',
        paper='"maxpool"',
        read=lambda cfg: extra_levels(cfg, pooled=True)[1],
    )
    return number, kind


def check_pooled_extra_levels(neck: str, values, name: Names) -> None:
    """Raise ValueError when a neck that max-pools its extra levels is asked for "conv" ones."""
    if values["num_extra_levels"] and values["extra_level_type"] != "maxpool":
        raise ValueError(
            f"{name('extra_level_type')}={values['extra_level_type']!r} is not supported by "
            f"{neck}: it makes its extra levels by max-pooling, as its reference does; set it to "
            "'maxpool'"
        )
