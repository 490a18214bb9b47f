"""The comparison: every cell's costs, every missing run of the grid cells x seeds through a
launcher, then the reports from the ledger's records.

Each run is ``tools/train_net.py`` in a fresh process with the cell's config, the recipe,
``SEED <seed>`` and ``OUTPUT_DIR <out>/runs/<cell>/seed<seed>``: its weights and AP are those of
that command rerun alone, bit for bit. Each finished run and each cell's costs is recorded at
once (:mod:`.records`), so an interrupted comparison resumes where it stopped (an interrupted
run continues from its last checkpoint), and records of an earlier comparison of another recipe
in the same folder are refused, never mixed in.
"""

import logging
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from .cells import DETECTORS, NECKS, Cell, Recipe, config_hash
from .costs import measure_costs
from .launchers import print_commands
from .records import Ledger, RecipeMismatchError, RunRecord, config_difference, read_ledger
from .reports import write_reports
from .runs import RunSpec, train_net_args
from .stats import CellSummary, summarize

__all__ = ["check_recorded", "collect", "compare", "launch", "plan_runs"]

logger = logging.getLogger(__name__)


def plan_runs(
    cells: Sequence[Cell],
    out: str,
    recipe: Recipe,
    seeds: Sequence[int],
    threads: int = 1,
    num_gpus: int = 0,
    num_machines: int = 1,
    weights: str = "",
) -> List[RunSpec]:
    """The :class:`RunSpec` of every cell x seed (recorded or not). ``weights``: with
    ``recipe.eval_only``, the checkpoint of each run, with {detector}, {neck} and {seed} (needed
    only by the runs not yet recorded)."""
    ledger, specs = Ledger(out), []
    processes = ["--num-gpus", str(num_gpus)] if num_gpus else []
    processes += ["--num-machines", str(num_machines)] if num_machines > 1 else []
    for cell in cells:
        for seed in seeds:
            output_dir = ledger.run_dir(cell.name, seed)
            path = weights.format(detector=cell.detector, neck=cell.neck, seed=seed)
            recorded = os.path.isfile(ledger.run_path(cell.name, seed))
            if recipe.eval_only and not recorded and not os.path.isfile(path):
                raise FileNotFoundError(
                    f"--weights of {cell.name} seed {seed}: {path} does not exist (from "
                    f"--weights {weights!r}, with {{detector}}, {{neck}} and {{seed}})"
                )
            cfg = recipe.config(cell, output_dir, seed, path)
            datasets = {split: list(e) for split, e in recipe.datasets.items()}
            args = train_net_args(
                cell.config_file, output_dir, seed, recipe.opts, datasets, processes, path
            )
            spec = RunSpec(
                cell.detector, cell.neck, seed, cell.config_file, tuple(args), output_dir,
                ledger.run_path(cell.name, seed), config_hash(cfg, recipe.eval_only), cfg.dump(),
                0 if recipe.eval_only else cfg.SOLVER.MAX_ITER, recipe.eval_only, threads,
                num_gpus, num_machines,
            )  # fmt: skip
            specs.append(spec)
    return specs


def check_recorded(specs: Sequence[RunSpec], records: Sequence[RunRecord]) -> None:
    """Refuse records of the comparison's cells whose config is not the cell's."""
    wanted = {(s.detector, s.neck): s for s in specs}
    for record in records:
        spec = wanted.get((record.detector, record.neck))
        if spec is not None and record.config_hash != spec.config_hash:
            raise RecipeMismatchError(
                f"{record.source} is a run of {record.cell} with another config than this "
                f"comparison's ({config_difference(spec.config, record.config)}; config file "
                f"{record.config_file} vs {spec.config_file}): give this comparison another "
                "--out, or the same config and overrides to resume that one"
            )


def _measure(
    cells: Sequence[Cell], specs: Sequence[RunSpec], recipe: Recipe, ledger: Ledger, repeats: int
) -> None:
    """Measure and record the costs of each cell that has none of its recipe."""
    measured = {(c.detector, c.neck): c for c in ledger.costs()}
    for index, cell in enumerate(cells, 1):
        spec = next(s for s in specs if (s.detector, s.neck) == (cell.detector, cell.neck))
        costs = measured.get((cell.detector, cell.neck))
        if costs is not None and costs.config_hash == spec.config_hash:
            continue
        logger.info(f"cell {index}/{len(cells)} {cell.name}: measuring costs")
        tqdm.write(f"measuring the costs of {cell.name} ({index}/{len(cells)})", file=sys.stderr)
        cfg = recipe.config(cell, spec.output_dir, spec.seed)
        ledger.write_costs(measure_costs(cfg, spec.config_hash, cell.detector, cell.neck, repeats))


def compare(
    cells: Sequence[Cell],
    out: str,
    recipe: Recipe = Recipe(),
    seeds: Optional[Sequence[int]] = None,
    launcher=None,
    threads: int = 1,
    repeats: int = 10,
    measure: bool = True,
    weights: str = "",
    num_gpus: int = 0,
    num_machines: int = 1,
    commands_only: bool = False,
) -> List[CellSummary]:
    """Measure every cell's missing costs, run every missing run, write the reports; return
    their rows. ``launcher``: a launcher of :mod:`.launchers` (None: only the reports);
    ``commands_only``: print the command of each missing run instead (nothing runs)."""
    os.makedirs(out, exist_ok=True)
    setup_logger(out, name="fpn_variants", configure_stdout=False)
    ledger = Ledger(out)
    seeds = list(seeds) if seeds else [recipe.config(cells[0], out).SEED]  # the config's
    specs = plan_runs(cells, out, recipe, seeds, threads, num_gpus, num_machines, weights)
    check_recorded(specs, ledger.runs())
    missing = [s for s in specs if not os.path.isfile(s.record_path)]
    if commands_only:
        print_commands(missing)
        return []
    if measure:
        cfg0 = recipe.config(cells[0], out, seeds[0])
        for name in cfg0.DATASETS.TRAIN + cfg0.DATASETS.TEST:
            DatasetCatalog.get(name)  # generate or read the data once, before any timing
        _measure(cells, specs, recipe, ledger, repeats)
    if launcher is not None and missing:
        launch(launcher, missing)
    return report(cells, [out], out)


def launch(
    launcher, specs: Sequence[RunSpec], after: Optional[Callable[[RunSpec], None]] = None
) -> None:
    """Run ``specs`` with ``launcher``, in their order, with a progress bar over them and one
    line per finished run; ``after(spec)`` is called once each run has ended (recorded or not)."""
    start = time.perf_counter()
    with tqdm(total=len(specs), desc="runs", unit="run", file=sys.stderr) as bar:

        def finished(spec: RunSpec, recorded: bool, error: Optional[BaseException]) -> None:
            bar.update(1)
            if error is not None:
                tqdm.write(f"{spec.cell} seed {spec.seed}: FAILED\n{error}", file=sys.stderr)
            elif not recorded:
                tqdm.write(
                    f"{spec.cell} seed {spec.seed}: run by another launcher", file=sys.stderr
                )
            else:
                tqdm.write(_finished_line(spec, time.perf_counter() - start), file=sys.stderr)
            if after is not None:
                after(spec)

        launcher.run(specs, finished)


def _finished_line(spec: RunSpec, elapsed: float) -> str:
    record = RunRecord.from_json(open(spec.record_path, encoding="utf-8").read())
    ap = record.metrics.get("bbox", {}).get("AP")
    ap_text = "–" if ap is None else f"{ap:.1f}"
    took = "" if record.train_time_s is None else f", trained in {record.train_time_s:.0f} s"
    return f"{spec.cell} seed {spec.seed}: AP {ap_text}{took} ({elapsed:.0f} s since start)"


def _cell_keys(cells: Optional[Sequence[Cell]], records: Sequence[RunRecord], costs):
    if cells:
        return [(c.detector, c.neck) for c in cells]
    found = {(r.detector, r.neck) for r in records} | {(c.detector, c.neck) for c in costs}
    order = {key: i for i, key in enumerate((d, n) for d in DETECTORS for n in NECKS)}
    return sorted(found, key=lambda key: order.get(key, len(order)))


def report(cells: Optional[Sequence[Cell]], folders: Sequence[str], out: str):
    """Rows and reports of the records of ``folders`` (``cells``: which rows, in their order;
    None: every cell recorded)."""
    runs, costs = read_ledger(folders)
    _check_one_recipe_per_cell(runs)
    costs = [c for c in costs if _same_recipe(c, runs)]
    rows = summarize(_cell_keys(cells, runs, costs), runs, costs)
    write_reports(rows, out)
    return rows


def collect(folders: Sequence[str], out: str, cells: Optional[Sequence[Cell]] = None):
    """``--collect``: one comparison from the records of several folders or machines."""
    return report(cells, folders, out)


def _same_recipe(costs, runs: Sequence[RunRecord]) -> bool:
    hashes = {r.config_hash for r in runs if (r.detector, r.neck) == (costs.detector, costs.neck)}
    return not hashes or costs.config_hash in hashes


def _check_one_recipe_per_cell(runs: Sequence[RunRecord]) -> None:
    first: dict = {}
    for run in runs:
        other = first.setdefault((run.detector, run.neck), run)
        if other.config_hash != run.config_hash:
            raise RecipeMismatchError(
                f"{run.source} and {other.source} are runs of {run.cell} with different configs "
                f"({config_difference(other.config, run.config)}): they are not seeds of one "
                "recipe, so they are not averaged; collect them in two comparisons"
            )
