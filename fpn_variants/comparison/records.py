"""The ledger of a comparison: one small JSON record per finished run and per cell's costs.

Layout under a comparison folder ``OUT``::

    OUT/runs/<cell>/seed<seed>.json     one finished run (RunRecord), small: meant to be committed
    OUT/runs/<cell>/seed<seed>/         that run's OUTPUT_DIR (weights, logs: never committed)
    OUT/costs/<cell>.json               the cell's costs (CellCosts)

Records are written atomically (a reader never sees half a file) and one path holds one run, so
two launchers writing into one ledger can neither corrupt a record nor count a run twice. Tables
are made from records alone, so the records of several folders or machines can be merged
(:func:`read_ledger`); runs of another recipe than their cell's are refused, never averaged in.
"""

import dataclasses
import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..io import atomic_write_text

__all__ = [
    "CellCosts",
    "Evaluation",
    "Ledger",
    "RecipeMismatchError",
    "RunRecord",
    "config_difference",
    "read_ledger",
]

# {task: {metric: value}} as Detectron2's COCOEvaluator reports it (values in %).
Metrics = Dict[str, Dict[str, Optional[float]]]


@dataclass
class Evaluation:
    """The COCO metrics of one evaluation, after ``iteration`` training iterations."""

    iteration: int
    metrics: Metrics


@dataclass
class RunRecord:
    """One finished run: what it was (cell, seed, resolved config and its hash, the command that
    reproduces it) and what it gave (metrics of every evaluation, training time), where."""

    detector: str
    neck: str
    seed: int
    config_file: str
    config_hash: str
    config: str  # the resolved config, YAML
    command: str
    mode: str  # "train" or "eval"
    iterations: int
    evaluations: List[Evaluation]
    train_time_s: Optional[float] = None
    train_images_per_s: Optional[float] = None
    device: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    git_commit: str = ""
    host: str = ""
    finished_at: str = ""
    source: str = field(default="", compare=False)  # the file it was read from, not saved

    @property
    def cell(self) -> str:
        return f"{self.detector}_{self.neck}"

    @property
    def metrics(self) -> Metrics:
        """The last evaluation's metrics ({} without any)."""
        return self.evaluations[-1].metrics if self.evaluations else {}

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        del data["source"]
        return json.dumps(data, indent=2) + "\n"

    @staticmethod
    def from_json(text: str, source: str = "") -> "RunRecord":
        data = json.loads(text)
        data["evaluations"] = [Evaluation(**e) for e in data["evaluations"]]
        return RunRecord(**data, source=source)


@dataclass
class CellCosts:
    """Costs of one cell, measured once (no training): parameters, fvcore GFLOPs, latency of the
    neck and of the model at batch 1, peak memory and speed of training steps, on ``device``."""

    detector: str
    neck: str
    config_hash: str
    device: str
    input_size: List[int]
    threads: int
    params: int
    neck_params: int
    gflops: float
    bottom_up_gflops: float
    neck_gflops: float
    neck_latency_ms: float
    neck_latency_min_ms: float
    latency_ms: float
    latency_min_ms: float
    train_peak_mb: float
    train_images_per_s: float
    memory_kind: str = ""  # what train_peak_mb measures on that device

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @staticmethod
    def from_json(text: str, source: str = "") -> "CellCosts":
        return CellCosts(**json.loads(text))


class RecipeMismatchError(ValueError):
    """A record of another recipe (schedule, data, config) than its cell's."""


def config_difference(ours: str, theirs: str, limit: int = 6) -> str:
    """The keys whose values differ between two resolved configs (YAML), as ``KEY: a -> b``."""

    def flat(node: Any, prefix: str = "") -> Dict[str, Any]:
        if not isinstance(node, dict):
            return {prefix[:-1]: node}
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out

    a, b = flat(yaml.safe_load(ours) or {}), flat(yaml.safe_load(theirs) or {})
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in _RUN_KEYS]
    shown = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:limit]]
    return "; ".join(shown + ([f"... {len(keys) - limit} more"] if len(keys) > limit else []))


_RUN_KEYS = ("OUTPUT_DIR", "SEED", "MODEL.WEIGHTS")


class Ledger:
    """The record files of one comparison folder."""

    def __init__(self, out: str):
        self.out = out

    def run_dir(self, cell: str, seed: int) -> str:
        """OUTPUT_DIR of a run (weights, logs, TensorBoard events)."""
        return os.path.join(self.out, "runs", cell, f"seed{seed}")

    def run_path(self, cell: str, seed: int) -> str:
        return self.run_dir(cell, seed) + ".json"

    def costs_path(self, cell: str) -> str:
        return os.path.join(self.out, "costs", cell + ".json")

    def write_run(self, record: RunRecord) -> None:
        atomic_write_text(self.run_path(record.cell, record.seed), record.to_json())

    def write_costs(self, costs: CellCosts) -> None:
        atomic_write_text(self.costs_path(f"{costs.detector}_{costs.neck}"), costs.to_json())

    def runs(self) -> List[RunRecord]:
        """Every run record of this folder (sorted by cell and seed)."""
        paths = glob.glob(os.path.join(self.out, "runs", "*", "seed*.json"))
        return [_read(path, RunRecord.from_json) for path in sorted(paths)]

    def costs(self) -> List[CellCosts]:
        paths = glob.glob(os.path.join(self.out, "costs", "*.json"))
        return [_read(path, CellCosts.from_json) for path in sorted(paths)]


def _read(path: str, parse):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return parse(text, path)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} is not a comparison record: {e}") from e


def read_ledger(folders: Sequence[str]):
    """The run and cost records of several comparison folders, merged: (runs, costs).

    A run present in two folders counts once when both records are of one recipe, and is an
    error otherwise; two cost records of one cell keep the first folder's."""
    runs: Dict[tuple, RunRecord] = {}
    costs: Dict[str, CellCosts] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--collect: {folder} is not a folder")
        for record in Ledger(folder).runs():
            key = (record.detector, record.neck, record.seed)
            other = runs.setdefault(key, record)
            if other is not record and other.config_hash != record.config_hash:
                raise RecipeMismatchError(_mismatch(record, other))
        for cost in Ledger(folder).costs():
            costs.setdefault(f"{cost.detector}_{cost.neck}", cost)
    return list(runs.values()), list(costs.values())


def _mismatch(record: RunRecord, other: RunRecord) -> str:
    return (
        f"{record.source} and {other.source} are runs of {record.cell} seed {record.seed} with "
        f"different configs ({config_difference(other.config, record.config)}): they are not "
        "one run; keep one of them"
    )
