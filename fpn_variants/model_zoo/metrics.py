"""The numbers of a release: COCO metrics, costs and training time of a training output folder."""

import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .manifest import PathLike

__all__ = [
    "COCO_METRICS",
    "COST_KEYS",
    "parse_duration",
    "read_costs",
    "read_metrics_file",
    "read_training_metrics",
    "read_training_time",
]

logger = logging.getLogger(__name__)

# COCOEvaluator metrics kept per task (values in %, as Detectron2 reports them).
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_TASKS = ("bbox", "segm", "keypoints")
# Cost numbers a release may carry: name -> type.
COST_KEYS = {"params": int, "gflops": float, "latency_ms": float, "train_time_s": float}
# Optional file in a training output folder with some of COST_KEYS (e.g. from a benchmark tool).
COST_FILE = "cost.json"

_EVAL_KEY_RE = re.compile(
    r"^(?:(?P<dataset>.+)/)?(?P<task>{})/(?P<metric>{})$".format(
        "|".join(_TASKS), "|".join(COCO_METRICS)
    )
)
# Durations as Detectron2 prints them (str of a datetime.timedelta): "[D day(s), ]H:MM:SS".
_DURATION_RE = re.compile(r"(?:(\d+) days?, )?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)")
# Time of the training iterations alone: fpn_variants.engine.TrainingSpeed's line, else
# Detectron2's IterationTimer line (seconds per iteration after its 3 warm-up iterations).
_TRAIN_TIME_RE = re.compile(r"Training iterations: \d+ in (\d+(?:\.\d*)?) s")
_D2_SPEED_RE = re.compile(
    r"Overall training speed: (\d+) iterations in .*? \((\d+(?:\.\d*)?) s / it\)"
)
_D2_WARMUP = 3

# {dataset or None: {task: {metric: value}}}
_Found = Dict[Optional[str], Dict[str, Dict[str, Any]]]


def _finite(value: Any) -> Optional[float]:
    """``value`` as a float, or None for NaN / inf (COCO reports NaN for an empty area range)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _eval_metrics(record: Mapping[str, Any]) -> _Found:
    """The COCO keys (``[<dataset>/]<task>/<metric>``) of one flat record."""
    found: _Found = {}
    for key, value in record.items():
        match = _EVAL_KEY_RE.match(str(key))
        if match is None or isinstance(value, bool):
            continue
        if value is not None and not isinstance(value, (int, float)):
            continue
        tasks = found.setdefault(match["dataset"], {})
        tasks.setdefault(match["task"], {})[match["metric"]] = (
            None if value is None else _finite(value)
        )
    return found


def _pick_dataset(found: _Found, dataset: Optional[str], source: str) -> Dict[str, Dict[str, Any]]:
    """The results of ``dataset``: the only ones when there is no choice to make, else an error
    that lists the datasets (also when ``dataset`` is named but absent)."""
    if not found:
        return {}
    if None in found and len(found) == 1:
        return found[None]
    if dataset in found:
        return found[dataset]
    if len(found) == 1 and dataset is None:
        return next(iter(found.values()))
    if dataset is None:
        problem = f"has results of several datasets {sorted(map(str, found))}: choose one"
    else:
        problem = f"has no results of {dataset!r}, only of {sorted(map(str, found))}: choose one"
    raise ValueError(f"{source} {problem} (package_model.py --dataset NAME)")


def _order_tasks(tasks: Mapping[str, Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {
        task: {m: tasks[task][m] for m in COCO_METRICS if m in tasks[task]}
        for task in sorted(tasks, key=_TASKS.index)
    }


def read_training_metrics(path: PathLike, dataset: Optional[str] = None) -> Dict[str, Dict]:
    """COCO metrics ``{task: {metric: value}}`` of the last evaluation in a Detectron2
    ``metrics.json`` (one JSON object per line).

    Keys like ``"bbox/AP"`` are read, or ``"<dataset>/bbox/AP"`` when several test sets were
    evaluated (then ``dataset`` picks one). A later evaluation replaces an earlier one task by
    task; lines that are not JSON (e.g. cut by an interrupted run) are skipped; NaN becomes None.
    """
    found: _Found = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning(f"{path}:{lineno}: not a JSON object, skipped")
                continue
            if isinstance(record, dict):
                for ds, tasks in _eval_metrics(record).items():
                    found.setdefault(ds, {}).update(tasks)
    return _order_tasks(_pick_dataset(found, dataset, str(path)))


def read_metrics_file(path: PathLike, dataset: Optional[str] = None) -> Dict[str, Dict]:
    """COCO metrics ``{task: {metric: value}}`` from a JSON file given explicitly: either
    ``{task: {metric: value}}``, flat ``{"task/metric": value}``, or Detectron2's test results
    ``{dataset: {task: {metric: value}}}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"metrics file {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"metrics file {path} must hold a JSON object {{task: {{metric: value}}}}")
    tasks = _pick_dataset(_eval_metrics(_flatten(data)), dataset, str(path))
    if not tasks:
        raise ValueError(
            f"metrics file {path} has no COCO metrics: expected e.g. "
            f'{{"bbox": {{"AP": 37.9, "AP50": 58.8}}}} (tasks bbox/segm/keypoints, metrics '
            f"{list(COCO_METRICS)})"
        )
    return _order_tasks(tasks)


def parse_duration(text: str) -> float:
    """Seconds from "123.4" (seconds) or "[D days, ]H:MM:SS"."""
    text = str(text).strip()
    match = _DURATION_RE.fullmatch(text)
    if match:
        days, hours, minutes, seconds = match.groups()
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"duration {text!r} is neither seconds nor H:MM:SS") from None


def read_training_time(log_file: PathLike) -> Optional[float]:
    """Seconds of the training iterations alone (no start-up, checkpoints, evaluation or
    PreciseBN) of a training ``log.txt``: its last "Training iterations: N in T s" line
    (:class:`fpn_variants.engine.TrainingSpeed`), else Detectron2's last "Overall training
    speed: N iterations in ... (S s / it)" line, as S x (N + its 3 warm-up iterations)."""
    text = Path(log_file).read_text(encoding="utf-8", errors="replace")
    matches = _TRAIN_TIME_RE.findall(text)
    if matches:
        return float(matches[-1])
    speeds = _D2_SPEED_RE.findall(text)
    if speeds:
        iterations, per_iteration = speeds[-1]
        return float(per_iteration) * (int(iterations) + _D2_WARMUP)
    return None


def read_costs(output_dir: Path, given: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """{key: value or None} for every key of COST_KEYS: the folder's cost.json, then the
    training time in log.txt, then ``given`` (command line), each later source winning."""
    costs: Dict[str, Any] = {key: None for key in COST_KEYS}
    cost_file = output_dir / COST_FILE
    if cost_file.is_file():
        data = json.loads(cost_file.read_text(encoding="utf-8"))
        costs.update({k: data[k] for k in COST_KEYS if data.get(k) is not None})
    if (output_dir / "log.txt").is_file():
        seconds = read_training_time(output_dir / "log.txt")
        if seconds is not None:
            costs["train_time_s"] = seconds
    unknown = set(given or {}) - set(COST_KEYS)
    if unknown:
        raise ValueError(f"unknown cost keys {sorted(unknown)}; valid: {list(COST_KEYS)}")
    costs.update({k: v for k, v in (given or {}).items() if v is not None})
    return {k: (None if v is None else COST_KEYS[k](v)) for k, v in costs.items()}
