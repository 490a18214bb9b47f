"""MODEL_ZOO.md, generated from the manifest: how to read it, common settings, one row a model."""

import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from detectron2.config import CfgNode

from ..io import atomic_write_text
from ..provenance import provenance_line
from ..registry import ALL_BUILDERS
from .loading import get_config
from .manifest import (
    REPO_ROOT,
    PathLike,
    load_manifest,
    locate_manifest,
    relpath,
    resolve,
    sorted_names,
)
from .metrics import COCO_METRICS

__all__ = ["render_model_zoo", "write_model_zoo"]

_HOW_TO_READ = """\
- **Name** links to the config the model was trained from (the YAML under `configs/` when it is
  known, otherwise the packaged config); **Load** is the call that builds it with its weights.
- **Params (M)**: all parameters of the detector (bottom-up network, neck and heads), counted on
  the built model when it was packaged.
- **GFLOPs** (fvcore convention: one multiply-add is one flop) and **Latency (ms)** (one image,
  inference, on the hardware below) are the numbers given to `tools/package_model.py`
  (`--gflops`, `--latency-ms`, or the training folder's `cost.json`); `tools/build_zoo.py`
  measures them in its comparison run, on one test-size image, all models in the same run.
- **Train time**: time of the training iterations alone (data loading, forward, backward,
  optimizer step), as `tools/train_net.py` logs it ("Training iterations: N in T s"); start-up,
  checkpoint writes, evaluation and PreciseBN are not in it.
- **Box AP**, **AP50**, **AP75**, **AP_S**, **AP_M**, **AP_L**: COCO box metrics (%) of the
  last evaluation on the test set in "Common settings"; **Mask AP**: COCO mask AP (Mask R-CNN).
- AP depends on the schedule in "Common settings": after a short schedule from scratch it ranks
  the necks under that recipe only; it is not what each neck reaches at convergence (README,
  "Reading these numbers").
- **sha256**: the first 8 hex digits of the weights file; `get` checks the whole hash before it
  loads the file with `torch.load(weights_only=True)`.
- "–": not measured or not applicable."""

_HEADER = (
    "Name | Detector | Neck | Params (M) | GFLOPs | Train time | Latency (ms) | Box AP | AP50 | "
    "AP75 | AP_S | AP_M | AP_L | Mask AP | sha256 | Load"
).split(" | ")
_ALIGN = (":---",) * 3 + ("---:",) * 11 + (":---",) * 2


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def _input_size(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    i = cfg.INPUT
    train = ", ".join(str(size) for size in i.MIN_SIZE_TRAIN)
    if len(i.MIN_SIZE_TRAIN) > 1:
        train = f"{i.MIN_SIZE_TRAIN_SAMPLING} of ({train})"
    return (
        f"train short side {train} (max {i.MAX_SIZE_TRAIN}), "
        f"test {i.MIN_SIZE_TEST} (max {i.MAX_SIZE_TEST})"
    )


def _schedule(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    s = cfg.SOLVER
    steps = f", steps {list(s.STEPS)}" if s.STEPS else ""
    return (
        f"{s.MAX_ITER} iterations, {s.LR_SCHEDULER_NAME}, base LR {s.BASE_LR}, "
        f"warmup {s.WARMUP_ITERS}{steps}"
    )


def _bottom_up(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    text = cfg.MODEL.BACKBONE.BOTTOM_UP
    if "resnet" in text:
        text = f"ResNet-{cfg.MODEL.RESNETS.DEPTH} ({cfg.MODEL.RESNETS.NORM or 'no'} norm)"
    init = entry.get("init_weights") or "from scratch"
    return f"{text}, init: {init}, frozen stages: {cfg.MODEL.BACKBONE.FREEZE_AT}"


def _batch_size(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    return f"{cfg.SOLVER.IMS_PER_BATCH} images per iteration (all workers)"


def _neck(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    """Width and norm as the neck reads them (BiFPN's and NAS-FPN's norm is their own key)."""
    neck = ALL_BUILDERS.get(cfg.MODEL.BACKBONE.NAME)
    options = neck.options_from_config(cfg) if neck else {}
    channels = options.get("out_channels", cfg.MODEL.FPN.OUT_CHANNELS)
    return f"{channels} channels, norm {options.get('norm', cfg.MODEL.FPN.NORM) or 'none'}"


def _data(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    return f"train {list(cfg.DATASETS.TRAIN)}, test {list(cfg.DATASETS.TEST)}"


def _hardware(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    return str(entry.get("hardware") or "–")


def _software(cfg: CfgNode, entry: Mapping[str, Any]) -> str:
    v = entry.get("versions", {})
    return f"torch {v.get('torch')}, Detectron2 {v.get('detectron2')}"


# "Common settings": label -> value of one model, from its config and manifest entry.
_SETTINGS: Dict[str, Callable[[CfgNode, Mapping[str, Any]], str]] = {
    "Input size": _input_size,
    "Schedule": _schedule,
    "Batch size": _batch_size,
    "Bottom-up": _bottom_up,
    "Neck": _neck,
    "Data": _data,
    "Hardware": _hardware,
    "Software": _software,
}


def _who(names: List[str], entries: Mapping[str, Mapping[str, Any]]) -> str:
    """The models ``names`` as few words: their detectors or necks when they cover all of them."""
    for key in ("detector", "neck"):
        kinds = list(dict.fromkeys(entries[n].get(key, "–") for n in names))
        if {n for n, e in entries.items() if e.get(key, "–") in kinds} == set(names):
            return ", ".join(kinds)
    return ", ".join(names)


def _common_settings(configs: List[CfgNode], entries: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """One "- **label**: value" line per setting; a value that differs is given per group of
    models (by detector or neck when possible)."""
    lines = []
    for label, setting in _SETTINGS.items():
        groups: Dict[str, List[str]] = {}
        for cfg, name in zip(configs, entries):
            groups.setdefault(setting(cfg, entries[name]), []).append(name)
        if len(groups) == 1:
            value = next(iter(groups))
        else:
            value = "; ".join(f"{v} ({_who(names, entries)})" for v, names in groups.items())
        lines.append(f"- **{label}**: {value}")
    return lines


def _row(name: str, entry: Mapping[str, Any], manifest_path: Path, out_dir: Path) -> str:
    """The "Models" table row of ``name``; links are relative to ``out_dir``."""
    metrics = entry.get("metrics", {})
    box = metrics.get("tasks", {}).get("bbox", {})
    mask = metrics.get("tasks", {}).get("segm", {})
    config = entry["config"]
    if config.get("source"):
        target = REPO_ROOT / config["source"]
    else:
        target = resolve(manifest_path.parent, config["packaged"])
    sha = f"`{entry['weights']['sha256'][:8]}`"
    if entry["weights"].get("url"):
        sha = f"[{sha}]({entry['weights']['url']})"
    params = metrics.get("params")
    cells = [
        f"[{name}]({relpath(target, out_dir)})",
        entry.get("detector", "–"),
        entry.get("neck", "–"),
        _fmt(None if params is None else params / 1e6, 2),
        _fmt(metrics.get("gflops")),
        _fmt_duration(metrics.get("train_time_s")),
        _fmt(metrics.get("latency_ms")),
        *[_fmt(box.get(m)) for m in COCO_METRICS],
        _fmt(mask.get("AP")),
        sha,
        f'`fpn_variants.model_zoo.get("{name}")`',
    ]
    return "| " + " | ".join(cells) + " |"


def render_model_zoo(
    manifest: Optional[PathLike] = None,
    output: PathLike = "MODEL_ZOO.md",
    command: str = "python tools/zoo_table.py",
) -> str:
    """The text of MODEL_ZOO.md for the models of ``manifest``; links are relative to the
    folder of ``output``. Its first line names ``command`` and the commits the releases were
    trained at (as the manifest records them)."""
    manifest_path = locate_manifest(manifest)
    models = load_manifest(manifest_path)["models"]
    names = sorted_names(models)
    out_dir = Path(output).resolve().parent
    commits = [models[n].get("versions", {}).get("fpn_variants_git") for n in names]
    lines = [
        "# fpn_variants Model Zoo",
        "",
        provenance_line([command], commits) + " Do not edit by hand: re-run the command.",
        "",
        "## How to read the tables",
        "",
        _HOW_TO_READ,
        "",
        "## Common settings",
        "",
    ]
    if names:
        configs = [get_config(n, manifest=manifest_path) for n in names]
        lines += _common_settings(configs, {n: models[n] for n in names})
    else:
        lines.append("No model has been released yet.")
    lines += [
        "",
        "## Models",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "|".join(_ALIGN) + "|",
    ]
    lines += [_row(n, models[n], manifest_path, out_dir) for n in names]
    if not names:
        lines.append(
            "\nPackage a training output folder with `python tools/package_model.py OUTPUT_DIR`."
        )
    return "\n".join(lines) + "\n"


def write_model_zoo(
    manifest: Optional[PathLike] = None,
    output: PathLike = "MODEL_ZOO.md",
    command: str = "python tools/zoo_table.py",
) -> str:
    """Render MODEL_ZOO.md (see :func:`render_model_zoo`) and replace ``output`` atomically."""
    text = render_model_zoo(manifest, output, command)
    atomic_write_text(output, text)
    return text
