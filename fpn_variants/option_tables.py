"""The README's option tables, written from the necks' option declarations
(:mod:`fpn_variants.necks.options`): ``tools/update_readme.py`` writes them between
``<!-- options:begin -->`` and ``<!-- options:end -->``, and a test fails when they drift."""

from typing import Any, List

from .necks.options import Option
from .provenance import current_line
from .registry import NECK_REGISTRY

__all__ = ["option_tables"]

_HEADER = [
    "| key | argument | default | paper | valid values | meaning |",
    "|---|---|---|---|---|---|",
]


def option_tables() -> str:
    """One markdown table per neck class of the papers' necks (the FPN paper's baselines take
    FPN's options); a subclass's table lists only the options its parent lacks."""
    sections: List[str] = []
    seen = set()
    for row in NECK_REGISTRY:
        cls = row.neck_class
        if not row.paper or cls in seen:
            continue
        seen.add(cls)
        parent = next((b for b in cls.__mro__[1:] if b in seen), None)
        inherited = {option.arg for option in parent.options} if parent else set()
        title = f"**{row.label}** (`MODEL.BACKBONE.NAME: {row.builder}`, `{cls.__name__}(...)`)"
        if parent is not None:
            title += f": {parent.__name__}'s options, and"
        rows = [_row(o) for o in cls.options if o.arg not in inherited]
        sections.append("\n".join([title, "", *_HEADER, *rows]))
    note = current_line("python tools/update_readme.py", "tests/test_options.py")
    return "\n\n".join([note, *sections]) + "\n"


def _row(option: Option) -> str:
    cells = [
        f"`{option.config_key}`",
        f"`{option.arg}`",
        f"`{_literal(option.config_default)}`",
        option.paper,
        _valid_values(option),
        option.doc.replace("|", "\\|"),
    ]
    return "| " + " | ".join(cells) + " |"


def _valid_values(option: Option) -> str:
    if option.choices:
        return ", ".join(f"`{_literal(c)}`" for c in option.choices)
    if option.minimum is not None:
        return f"integer >= {option.minimum}"
    return {bool: "True, False", int: "integer", str: "string", list: "list"}[option.type]


def _literal(value: Any) -> str:
    """A value as YAML/Python writes it: strings in double quotes."""
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
