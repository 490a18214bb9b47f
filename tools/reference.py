#!/usr/bin/env python
"""The long-schedule reference comparison (docs/reference_comparison.md), built run by run.

    make reference                            # = python tools/reference.py --jobs 2
    python tools/reference.py --print-commands   # the missing runs, as commands
    python tools/reference.py --report        # runs.csv, summary.md, page, README: records alone
    python tools/reference.py --costs-only    # each cell's costs, on a quiet machine: no training

The grid, seeds 1-3 each, one recipe for every neck (:mod:`fpn_variants.comparison.reference`:
the CPU configs of configs/Synthetic in float32 with channels-last), in this order:

1. Faster R-CNN, the four paper necks, S iterations (S = 1,000: 4 epochs of the synthetic data);
2. the same at 2S: a conclusion of the reference must survive doubling the schedule;
3. Faster R-CNN, the FPN paper's baselines, at S;
4. RetinaNet, the four paper necks, at S.

Each group runs seed by seed (every neck's seed 1 first), so a partial reference is already
paired; the missing runs of all groups go to the machine as one queue, ``--jobs`` at a time, so
no group waits for the previous one's last run. A finished run's record goes to
``docs/reference/S<iterations>/runs/<cell>/seed<N>.json`` (committed; the run folders stay
local, see its .gitignore, and keep only their final weights once recorded): a rerun, on this
machine or another, trains only the runs whose record is missing, and an interrupted run resumes
from its last checkpoint. ``docs/reference/runs.csv`` (one row per run) is rewritten from the
records, and so is ``docs/reference/summary.md`` (:func:`write_summary`): which runs are recorded
and which are missing, the table at S, the schedule criterion (S against 2S), the learning
curves and the papers' claims, each checked (:mod:`fpn_variants.comparison.claims`). The same
sections are the generated block of the page, docs/reference_comparison.md (:func:`write_page`;
``--page``), whose prose around it is hand-written, and the tables at S are README's table of
the comparison (:func:`write_readme`; ``--readme``).
"""

import argparse
import glob
import os
import posixpath
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    DETECTORS,
    NECKS,
    PAPER_NECKS,
    CellSummary,
    Ledger,
    Recipe,
    RunRecord,
    RunSpec,
    cells_from_template,
    compare,
    launch,
    make_launcher,
    plan_runs,
    summarize,
)
from fpn_variants.comparison.claims import (
    FAILS,
    HOLDS,
    check_claims,
    render_claims,
    render_schedule,
    schedule_checks,
    schedule_overall,
)
from fpn_variants.comparison.grid import check_recorded
from fpn_variants.comparison.launchers import print_commands
from fpn_variants.comparison.reference import (
    EVALUATIONS_PER_RUN,
    REFERENCE_FOLDER,
    REFERENCE_SCHEDULE,
    SEEDS,
    schedule_folder,
    schedule_opts,
)
from fpn_variants.comparison.reports import learning_curve, render_table, runs_csv_text
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.io import atomic_write_text
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.plots import plot_learning_curves
from fpn_variants.provenance import provenance_line, replace_section

BASELINES = tuple(neck for neck in NECKS if neck not in PAPER_NECKS)

# (detector, necks, multiple of S), in the order they run.
Group = Tuple[str, Tuple[str, ...], int]
GROUPS: Tuple[Group, ...] = (
    ("faster_rcnn", PAPER_NECKS, 1),
    ("faster_rcnn", PAPER_NECKS, 2),
    ("faster_rcnn", BASELINES, 1),
    ("retinanet", PAPER_NECKS, 1),
)


def write_runs_csv(out: str) -> str:
    """Rewrite ``<out>/runs.csv`` from the records of every schedule folder; return its path."""
    folders = sorted(
        os.path.join(out, name)
        for name in os.listdir(out)
        if name.startswith("S") and os.path.isdir(os.path.join(out, name, "runs"))
    )
    records = [record for folder in folders for record in Ledger(folder).runs()]
    path = os.path.join(out, "runs.csv")
    atomic_write_text(path, runs_csv_text(records))
    return path


SUMMARY = "summary.md"
# The reference's page: hand-written around the block of the summary that :func:`write_page`
# rewrites (between ``<!-- reference-summary:begin -->`` and ``<!-- reference-summary:end -->``).
PAGE = os.path.join("docs", "reference_comparison.md")
PAGE_SECTION = "reference-summary"
# README's table of the reference: the block :func:`write_readme` rewrites (provenance and the
# tables at S) between ``<!-- reference-table:begin -->`` and ``<!-- reference-table:end -->``.
README = "README.md"
README_SECTION = "reference-table"
# The summary's learning-curve pictures (written next to it): (box metric, its name, file).
CURVE_PICTURES = (
    ("AP", "AP", "learning_curves_AP.png"),
    ("APs", "AP_S", "learning_curves_AP_S.png"),
)


@dataclass
class GroupProgress:
    """The runs of one group of :data:`GROUPS` recorded so far and those missing, as
    (neck, seed)."""

    detector: str
    multiple: int
    iterations: int
    paper: bool
    recorded: List[Tuple[str, int]]
    missing: List[Tuple[str, int]]

    @property
    def name(self) -> str:
        necks = "paper necks" if self.paper else "FPN-paper baselines"
        schedule = "S" if self.multiple == 1 else f"{self.multiple}S"
        return f"{DETECTORS[self.detector]}, {necks}, {schedule}"


def group_progress(
    schedule: int, runs_at: Dict[int, List[RunRecord]], groups: Sequence[Group] = GROUPS
) -> List[GroupProgress]:
    """The :class:`GroupProgress` of each group, from the runs of each schedule's ledger."""
    progress = []
    for detector, necks, multiple in groups:
        iterations = multiple * schedule
        done = {(r.neck, r.seed) for r in runs_at.get(iterations, []) if r.detector == detector}
        planned = [(neck, seed) for neck in necks for seed in SEEDS]
        recorded = [run for run in planned if run in done]
        missing = [run for run in planned if run not in done]
        paper = necks == PAPER_NECKS
        progress.append(GroupProgress(detector, multiple, iterations, paper, recorded, missing))
    return progress


def _missing_text(missing: Sequence[Tuple[str, int]]) -> str:
    """The seeds missing per neck, as "FPN: 2, 3; PANet: 1, 2, 3"."""
    seeds: Dict[str, List[str]] = {}
    for neck, seed in missing:
        seeds.setdefault(neck, []).append(str(seed))
    return "; ".join(f"{NECKS[neck][0]}: {', '.join(s)}" for neck, s in seeds.items()) or "–"


def _status(progress: Sequence[GroupProgress]) -> str:
    """Whether every run of ``progress`` is recorded, in bold while one is missing."""
    recorded = sum(len(group.recorded) for group in progress)
    planned = recorded + sum(len(group.missing) for group in progress)
    if recorded == planned:
        return f"Complete: all {planned} runs recorded."
    return f"**Incomplete: {recorded} of {planned} runs recorded.**"


def _progress_section(progress: Sequence[GroupProgress]) -> List[str]:
    lines = ["## Progress", "", _status(progress), ""]
    lines += ["| group | iterations | recorded | missing (neck: seeds) |", "|---|---|---|---|"]
    for g in progress:
        total = len(g.recorded) + len(g.missing)
        missing = _missing_text(g.missing)
        lines.append(f"| {g.name} | {g.iterations} | {len(g.recorded)} / {total} | {missing} |")
    return lines + [
        "",
        "The runs are trained by `make reference` (= `python tools/reference.py --jobs 2`), "
        "each by the `tools/train_net.py` command kept in its record.",
        "",
    ]


def _results_section(
    progress: Sequence[GroupProgress], rows: Sequence[CellSummary], schedule: int
) -> List[str]:
    lines = [f"## Results at S = {schedule} iterations", ""]
    for detector in dict.fromkeys(row.detector for row in rows):
        sub = [row for row in rows if row.detector == detector]
        groups = [g for g in progress if g.detector == detector and g.multiple == 1]
        lines += [f"{DETECTORS[detector]}: {_status(groups)}", ""]
        if any(row.runs for row in sub):
            lines.append(render_table(sub))
        else:
            lines += [f"### {DETECTORS[detector]}", "", "No runs yet.", ""]
    return lines


def _schedule_section(progress, rows_s, rows_2s, schedule: int) -> List[str]:
    checks = schedule_checks(rows_s, rows_2s)
    overall = schedule_overall(checks, len(SEEDS))
    groups = [g for g in progress if g.detector == "faster_rcnn" and g.paper]
    conclusion = {
        HOLDS: f"S = {schedule} qualifies",
        FAILS: f"S = {schedule} does not qualify: double S (issue 23)",
    }.get(overall.kind, overall.kind.capitalize())
    reason = f" ({overall.reason})" if overall.reason else ""
    return [
        f"## The schedule: S = {schedule} against 2S = {2 * schedule} (Faster R-CNN)",
        "",
        _status(groups),
        "",
        "S qualifies when, for every neck, its box-AP difference to FPN (paired by seed, 95% "
        "Student-t interval) keeps its sign from S to 2S, or both intervals contain 0: the "
        "ranking against FPN does not flip. It needs 2 paired seeds for an interval, and "
        f"{len(SEEDS)} per neck at S and at 2S for *S qualifies*. The gain from S to 2S is "
        "each neck's AP at 2S minus its AP at S, paired by seed.",
        "",
        render_schedule(checks),
        f"**{conclusion}**{reason}.",
        "",
    ]


def write_curves(rows_s, rows_2s, out: str) -> List[Tuple[str, str]]:
    """The learning curves of the paper necks (Faster R-CNN) at S and 2S, one picture per
    metric of :data:`CURVE_PICTURES` in ``out``; return the (metric name, file) written."""
    written = []
    for metric, name, file in CURVE_PICTURES:
        curves = {
            f"{row.label}, {row.runs[0].iterations} it": learning_curve(row, metric)
            for row in [*rows_s, *rows_2s]
            if row.detector == "faster_rcnn" and row.neck in PAPER_NECKS and row.runs
        }
        curves = {label: by_seed for label, by_seed in curves.items() if by_seed}
        if curves:
            plot_learning_curves(curves, os.path.join(out, file), metric=name)
            written.append((name, file))
    return written


def _link(folder: str, path: str) -> str:
    """``path`` (relative to the reference folder) as seen from a page ``folder`` away from it
    ("" for summary.md, which lies in it)."""
    return posixpath.join(folder, path) if folder else path


def _curves_section(progress, pictures: Sequence[Tuple[str, str]], folder: str) -> List[str]:
    groups = [g for g in progress if g.detector == "faster_rcnn" and g.paper]
    lines = ["## Learning curves (Faster R-CNN, paper necks, S and 2S)", "", _status(groups), ""]
    if not pictures:
        return lines + ["No evaluations recorded yet.", ""]
    lines.append(
        "Box AP at each evaluation (every quarter of the schedule): the mean over seeds, and a "
        "band from the lowest to the highest seed."
    )
    return lines + [""] + [f"![{name}]({_link(folder, file)})" for name, file in pictures] + [""]


def _claims_section(progress, rows_s, schedule: int, folder: str) -> List[str]:
    return [
        f"## The papers' claims, checked at S = {schedule}",
        "",
        _status([g for g in progress if g.multiple == 1]),
        "",
        "Δ = the first neck's metric minus the second's, paired by seed, with its 95% Student-t "
        "interval. **holds**: the interval lies above 0 (for BiFPN also fewer GFLOPs in the cost "
        "records); **does not hold**: below 0 (or not fewer GFLOPs); **not decided**: the "
        "interval contains 0, fewer than 2 seeds are paired (no interval), or the GFLOPs are "
        "not measured; **no runs yet**: a neck has no run. *At least FPN's AP* is decided "
        "only when the interval excludes 0 (an equivalence would need a margin). The necks' "
        f"FLOPs in the papers' own setting: [neck_flops.md]({_link(folder, 'neck_flops.md')}).",
        "",
        render_claims(check_claims(rows_s, seeds=len(SEEDS))),
    ]


@dataclass
class Report:
    """What the records of the reference say, as :func:`make_report` reads them: the progress of
    each group, every run, the cells at S and 2S, and the learning-curve pictures written
    (metric name, file in the reference folder)."""

    schedule: int
    progress: List[GroupProgress]
    runs: List[RunRecord]
    rows_s: List[CellSummary]
    rows_2s: List[CellSummary]
    pictures: List[Tuple[str, str]]


def _header(report: Report, folder: str) -> List[str]:
    """The provenance line and what the report is made from."""
    written_at = git_commit()
    commits = [run.git_commit for run in report.runs] or [written_at]
    at_s, at_2s = (_link(folder, f"S{m * report.schedule}/") for m in (1, 2))
    return [
        provenance_line(
            ["make reference", "python tools/reference.py --report"], commits, written_at=written_at
        ),
        "",
        f"Made from the {len(report.runs)} run records under `{at_s}` and `{at_2s}` (and their "
        "cost records) alone; do not edit. The grid, the recipe and the commands: "
        "`tools/reference.py`, issue 23. While a section says *incomplete*, it changes as runs "
        "come in and none of it is the reference's conclusion; a verdict needs 2 seeds paired "
        "by seed for an interval, and says *not decided* otherwise.",
        "",
    ]


def report_sections(report: Report, folder: str = "") -> List[str]:
    """The lines of summary.md after its title, and of the page's block: provenance, progress,
    results at S, the schedule criterion, learning curves, the claims. ``folder``: the path from
    the page to the reference folder, which links and pictures go through ("" for summary.md)."""
    progress, rows_s, schedule = report.progress, report.rows_s, report.schedule
    lines = _header(report, folder)
    lines += _progress_section(progress)
    lines += _results_section(progress, rows_s, schedule)
    lines += _schedule_section(progress, rows_s, report.rows_2s, schedule)
    lines += _curves_section(progress, report.pictures, folder)
    lines += _claims_section(progress, rows_s, schedule, folder)
    return lines


def summary_text(report: Report) -> str:
    """summary.md: the :func:`report_sections` under its title, as Markdown."""
    return "\n".join(["# The long-schedule reference: summary", "", *report_sections(report)])


def _grid_cells(multiple: int) -> List[Tuple[str, str]]:
    """(detector, neck) of the groups at ``multiple`` x S, in the grid's order."""
    return [(d, neck) for d, necks, m in GROUPS if m == multiple for neck in necks]


def make_report(out: str, schedule: int) -> Report:
    """The :class:`Report` of the records at S and 2S under ``out`` alone; writes its learning
    curves there."""
    ledgers = {m: Ledger(schedule_folder(out, m * schedule)) for m in (1, 2)}
    runs_at = {m * schedule: ledger.runs() for m, ledger in ledgers.items()}
    rows_s = summarize(_grid_cells(1), runs_at[schedule], ledgers[1].costs())
    rows_2s = summarize(_grid_cells(2), runs_at[2 * schedule], ledgers[2].costs())
    runs = [run for runs in runs_at.values() for run in runs]
    pictures = write_curves(rows_s, rows_2s, out)
    return Report(schedule, group_progress(schedule, runs_at), runs, rows_s, rows_2s, pictures)


def write_summary(report: Report, out: str) -> str:
    """Rewrite ``<out>/summary.md``; return its path."""
    path = os.path.join(out, SUMMARY)
    atomic_write_text(path, summary_text(report))
    return path


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _relative(out: str, page: str) -> str:
    """The path from ``page``'s folder to the reference folder ``out`` ("" when the same)."""
    folder = os.path.relpath(os.path.abspath(out), os.path.dirname(os.path.abspath(page)))
    return "" if folder == os.curdir else folder.replace(os.sep, "/")


def _write_block(page: str, section: str, lines: Sequence[str]) -> str:
    atomic_write_text(page, replace_section(_read(page), section, "\n".join(lines), page))
    return page


def write_page(report: Report, out: str, page: str) -> str:
    """Rewrite the ``reference-summary`` block of ``page`` (the rest of it is hand-written), its
    links and pictures relative to the page; return its path."""
    return _write_block(page, PAGE_SECTION, report_sections(report, _relative(out, page)))


def readme_sections(report: Report, folder: str) -> List[str]:
    """The lines of README's block: provenance and the tables at S (the page has the rest)."""
    results = _results_section(report.progress, report.rows_s, report.schedule)
    return _header(report, folder) + results[2:]  # under README's own heading


def write_readme(report: Report, out: str, readme: str) -> str:
    """Rewrite the ``reference-table`` block of ``readme``; return its path."""
    return _write_block(readme, README_SECTION, readme_sections(report, _relative(out, readme)))


def rewrite_reports(
    out: str, schedule: int, page: Optional[str] = None, readme: Optional[str] = None
) -> List[str]:
    """runs.csv, summary.md and, given ``page`` and ``readme``, their blocks rewritten from the
    records; return their paths."""
    report = make_report(out, schedule)
    paths = [write_runs_csv(out), write_summary(report, out)]
    paths += [write_page(report, out, page)] if page else []
    return paths + ([write_readme(report, out, readme)] if readme else [])


def missing_runs(args: argparse.Namespace, groups: Sequence[Group] = GROUPS) -> List[RunSpec]:
    """The runs of ``groups`` that have no record, in the order they run: group by group, seed
    by seed. Each group's records are checked against its recipe, and its missing costs are
    measured first (at S, unless ``--no-costs`` or ``--print-commands``)."""
    specs: List[RunSpec] = []
    for detector, necks, multiple in groups:
        iterations = multiple * args.schedule
        folder = schedule_folder(args.out, iterations)
        cells = cells_from_template(DEFAULT_TEMPLATE, [detector], list(necks))
        recipe = Recipe.make(schedule_opts(iterations))
        if args.costs and multiple == 1 and not args.print_commands:
            compare(cells, folder, recipe, SEEDS, None, threads=1)  # the missing costs
        planned = plan_runs(cells, folder, recipe, SEEDS, threads=1)
        check_recorded(planned, Ledger(folder).runs())
        by_seed = sorted(planned, key=lambda spec: spec.seed)  # stable: the cells' order kept
        specs += [spec for spec in by_seed if not os.path.isfile(spec.record_path)]
    return specs


def run_groups(args: argparse.Namespace, groups: Sequence[Group] = GROUPS) -> None:
    """Train (or, with ``--print-commands``, print) the missing runs of ``groups`` as one queue,
    ``--jobs`` at a time (a group's last runs share the machine with the next group's first),
    rewriting runs.csv, summary.md and the page after each run."""
    specs = missing_runs(args, groups)
    if args.print_commands:
        print_commands(specs)
        return
    if args.costs_only or not specs:
        return

    def after(spec: RunSpec) -> None:
        drop_periodic_checkpoints(spec)
        paths = rewrite_reports(args.out, args.schedule, args.page, args.readme)
        print(f"{' and '.join(paths)} rewritten", file=sys.stderr)

    launch(make_launcher("local", args.out, args.jobs), specs, after=after)


def drop_periodic_checkpoints(spec: RunSpec) -> None:
    """Delete the periodic checkpoints (``model_0*.pth``, ~100 MB each) of a run that is
    recorded and has its ``model_final.pth``: they only served to resume it. The record, the
    logs and the final weights (the model zoo's) stay."""
    final = os.path.join(spec.output_dir, "model_final.pth")
    if os.path.isfile(spec.record_path) and os.path.isfile(final):
        for path in glob.glob(os.path.join(spec.output_dir, "model_0*.pth")):
            os.remove(path)


def _block_file(
    given: Optional[str], default: str, section: str, args, parser: argparse.ArgumentParser
) -> Optional[str]:
    """The file whose ``section`` block the reports rewrite: ``given``, else ``default`` when
    ``--out`` is the reference folder itself (a run elsewhere never touches the repository's
    files); checked before anything is trained or written."""
    path = given
    if path is None and os.path.abspath(args.out) == os.path.abspath(REFERENCE_FOLDER):
        path = default
    if path is not None:
        if not os.path.isfile(path):
            parser.error(f"{path}: no such file (the file the reference's {section} block goes in)")
        try:
            replace_section(_read(path), section, "", path)
        except ValueError as error:
            parser.error(str(error))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=REFERENCE_FOLDER)
    parser.add_argument("--schedule", type=int, default=REFERENCE_SCHEDULE, help="S, in iterations")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--no-costs", dest="costs", action="store_false", help="skip the costs")
    parser.add_argument(
        "--costs-only", action="store_true", help="measure the missing costs, train nothing"
    )
    parser.add_argument("--print-commands", action="store_true", help="print missing runs only")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite runs.csv, summary.md, the page and README's table",
    )
    parser.add_argument(
        "--page",
        help=f"the page whose <!-- {PAGE_SECTION} --> block is rewritten (default: {PAGE} when "
        "--out is the default folder, no page otherwise)",
    )
    parser.add_argument(
        "--readme",
        help=f"the file whose <!-- {README_SECTION} --> block (the tables at S) is rewritten "
        f"(default: {README} when --out is the default folder, none otherwise)",
    )
    args = parser.parse_args(argv)
    if args.schedule < EVALUATIONS_PER_RUN or args.jobs < 1:
        parser.error(f"--schedule must be at least {EVALUATIONS_PER_RUN} and --jobs at least 1")
    if args.costs_only and not args.costs:
        parser.error("--costs-only measures the costs that --no-costs skips: give one of them")
    args.page = _block_file(args.page, PAGE, PAGE_SECTION, args, parser)
    args.readme = _block_file(args.readme, README, README_SECTION, args, parser)
    quiet_upstream_warnings()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    if not args.report:
        run_groups(args)
    if not args.print_commands:
        paths = rewrite_reports(args.out, args.schedule, args.page, args.readme)
        print(f"{', '.join(paths)} written")


if __name__ == "__main__":
    main()
