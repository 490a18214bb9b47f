"""tools/reference.py: the reference grid of issue 23, run seed by seed, a rerun training only the
runs whose record is missing, runs.csv rewritten from the records of every schedule, and
summary.md (progress, table, schedule criterion, claims) with verdicts computed from the records,
its sections also the generated block of the reference's page."""

import csv
import glob
import os
import re

import pytest

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    PAPER_NECKS,
    CellCosts,
    Ledger,
    Recipe,
    RecipeMismatchError,
    RunRecord,
    cells_from_template,
    claims,
    paired_difference,
    plan_runs,
)
from fpn_variants.comparison.records import Evaluation
from fpn_variants.comparison.reports import RUN_COLUMNS

from .utils import load_tool

RUN_LINE = re.compile(
    r"MAX_ITER (\d+) .*SEED (\d+) OUTPUT_DIR \S+/runs/(faster_rcnn|retinanet)_(\w+)/seed"
)
S = 8  # a short S: the grid's commands and records, no training


@pytest.fixture(scope="module")
def tool():
    return load_tool("reference")


def printed_runs(tool, out, capsys):
    """(neck, seed, iterations, detector) of each printed missing run, in order."""
    tool.main(["--out", str(out), "--schedule", str(S), "--print-commands"])
    runs = []
    for line in capsys.readouterr().out.splitlines():
        match = RUN_LINE.search(line)
        if match:
            runs.append((match[4], int(match[2]), int(match[1]), match[3]))
    return runs


def write_record(out, detector, neck, seed, iterations, metrics, config_hash="h", halfway=None):
    """A run record of ``metrics`` after ``iterations`` (and ``halfway`` at half of them)."""
    ledger = Ledger(os.path.join(str(out), f"S{iterations}"))
    evaluations = [Evaluation(iterations, {"bbox": metrics})]
    if halfway is not None:
        evaluations.insert(0, Evaluation(iterations // 2, {"bbox": halfway}))
    record = RunRecord(
        detector, neck, seed, "c.yaml", config_hash, "", "cmd", "train", iterations, evaluations,
        train_time_s=1234.4, git_commit="a" * 40,
    )  # fmt: skip
    os.makedirs(os.path.dirname(ledger.run_path(record.cell, seed)), exist_ok=True)
    ledger.write_run(record)


def test_the_grid_runs_seed_by_seed_paper_necks_first(tool, tmp_path, capsys):
    runs = printed_runs(tool, tmp_path, capsys)
    assert len(runs) == 3 * (4 + 4 + len(tool.BASELINES) + 4)
    # every paper neck's seed 1 at S comes first, then seed 2: a partial reference is paired
    assert runs[:4] == [(neck, 1, S, "faster_rcnn") for neck in PAPER_NECKS]
    assert runs[4:8] == [(neck, 2, S, "faster_rcnn") for neck in PAPER_NECKS]
    assert {r for r in runs if r[2] == 2 * S} == {
        (neck, seed, 2 * S, "faster_rcnn") for neck in PAPER_NECKS for seed in (1, 2, 3)
    }
    assert {r[0] for r in runs if r[3] == "retinanet"} == set(PAPER_NECKS)
    assert {r[0] for r in runs if r[3] == "faster_rcnn" and r[0] not in PAPER_NECKS} == set(
        tool.BASELINES
    )


CHECKPOINTS = ("model_0000001.pth", "model_0000003.pth", "model_final.pth")


class RecordingLauncher:
    """Records the queue it is given and "trains" each run by writing its record."""

    def __init__(self, out):
        self.out, self.queues = out, []

    def run(self, specs, finished):
        self.queues.append([(s.neck, s.seed, s.iterations, s.detector) for s in specs])
        for spec in specs:
            os.makedirs(spec.output_dir)
            for name in CHECKPOINTS:
                open(os.path.join(spec.output_dir, name), "w").close()
            metrics = {"AP": 50.0 + spec.seed}
            write_record(
                self.out, spec.detector, spec.neck, spec.seed, spec.iterations, metrics,
                spec.config_hash,
            )  # fmt: skip
            finished(spec, True, None)


def test_the_missing_runs_go_to_the_machine_as_one_queue_in_the_grid_order(
    tool, tmp_path, capsys, monkeypatch
):
    """One queue for the whole grid (no group waits for the previous one's last run), in the
    printed order, and the reports rewritten after every run."""
    expected = printed_runs(tool, tmp_path, capsys)
    launcher, rewrites = RecordingLauncher(tmp_path), []
    monkeypatch.setattr(tool, "make_launcher", lambda name, out, jobs: launcher)
    monkeypatch.setattr(tool, "rewrite_reports", lambda *args: rewrites.append(args) or [])
    tool.main(["--out", str(tmp_path), "--schedule", str(S), "--no-costs"])
    assert launcher.queues == [expected] and len(rewrites) == len(expected) + 1
    # a recorded run keeps its final weights; the checkpoints that served to resume it go
    folders = glob.glob(os.path.join(str(tmp_path), "S*", "runs", "*", "seed*", ""))
    assert len(folders) == len(expected)
    assert all(os.listdir(folder) == ["model_final.pth"] for folder in folders)
    tool.main(["--out", str(tmp_path), "--schedule", str(S), "--no-costs"])
    assert len(launcher.queues) == 1  # every run recorded: nothing is launched again


def test_a_recorded_run_is_not_trained_again_and_another_recipe_is_refused(tool, tmp_path, capsys):
    folder = tool.schedule_folder(str(tmp_path), S)
    cells = cells_from_template(DEFAULT_TEMPLATE, ["faster_rcnn"], ["fpn"])
    spec = plan_runs(cells, folder, Recipe.make(tool.schedule_opts(S)), [1])[0]
    assert "MODEL.CHANNELS_LAST True" in spec.command() and "TEST.EVAL_PERIOD 2" in spec.command()
    assert "SOLVER.CHECKPOINT_PERIOD 2" in spec.command()
    write_record(tmp_path, "faster_rcnn", "fpn", 1, S, {"AP": 50.0}, spec.config_hash)
    runs = printed_runs(tool, tmp_path, capsys)
    assert ("fpn", 1, S, "faster_rcnn") not in runs
    assert ("fpn", 2, S, "faster_rcnn") in runs and ("fpn", 1, 2 * S, "faster_rcnn") in runs

    write_record(tmp_path, "faster_rcnn", "fpn", 1, S, {"AP": 50.0}, "another recipe")
    with pytest.raises(RecipeMismatchError, match="faster_rcnn_fpn"):
        printed_runs(tool, tmp_path, capsys)


def test_runs_csv_has_one_sorted_row_per_run_of_every_schedule(tool, tmp_path):
    full = {"AP": 61.234, "AP50": 80.0, "AP75": 70.0, "APs": 40.0, "APm": 60.0, "APl": 70.0}
    write_record(tmp_path, "faster_rcnn", "nasfpn", 1, 2 * S, full)
    write_record(tmp_path, "faster_rcnn", "nasfpn", 1, S, {**full, "APl": float("nan")})
    write_record(tmp_path, "faster_rcnn", "fpn", 2, S, full)
    write_record(tmp_path, "faster_rcnn", "fpn", 1, S, full)
    tool.main(["--out", str(tmp_path), "--report"])
    with open(tmp_path / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == RUN_COLUMNS
    assert [(r["neck"], r["seed"], r["max_iter"]) for r in rows] == [
        ("fpn", "1", str(S)), ("fpn", "2", str(S)), ("nasfpn", "1", str(S)),
        ("nasfpn", "1", str(2 * S)),
    ]  # fmt: skip
    assert rows[0]["AP"] == "61.23" and rows[0]["AP_S"] == "40.00"
    assert rows[0]["train_time_s"] == "1234" and rows[0]["git_commit"] == "a" * 12
    assert rows[2]["AP_L"] == ""  # NaN: no large objects evaluated


# Seed-to-seed variation of FPN's AP, and of each neck's difference to FPN: with 3 seeds, that
# difference's 95% interval is its mean +- 0.43.
FPN_BY_SEED = {1: 50.0, 2: 51.0, 3: 49.5}
JITTER = {1: 0.2, 2: -0.1, 3: -0.1}
# Each neck's AP minus FPN's, at S (Faster R-CNN and RetinaNet).
AT_S = {"panet": -3.0, "bifpn": 1.0, "nasfpn": 2.0, "c4": -5.0, "c5": -6.0, "bottom_up": -1.0,
        "top_down": -2.0, "fpn_p2": 0.0}  # fmt: skip
# Every neck gains 5 AP from S to 2S (FPN exactly 5).
GAIN = 5.0


def neck_ap(neck, seed, delta):
    return FPN_BY_SEED[seed] + (0.0 if neck == "fpn" else delta + JITTER[seed])


def write_run(out, detector, neck, seed, iterations, ap, ap_small):
    metrics = {"AP": ap, "AP50": ap + 20, "AP75": ap + 5, "APs": ap_small, "APm": ap, "APl": ap}
    halfway = {"AP": ap - 10, "APs": ap_small - 5}
    write_record(out, detector, neck, seed, iterations, metrics, halfway=halfway)


def write_grid(tool, out, at_2s, skip=()):
    """Every run of the grid at S, except (detector, neck, seed, multiple) in ``skip``: AP as
    :data:`AT_S` (at 2S: ``at_2s`` + :data:`GAIN`), AP_S half the AP (a quarter for C4/C5)."""
    for detector, necks, multiple in tool.GROUPS:
        for neck in necks:
            for seed in tool.SEEDS:
                if (detector, neck, seed, multiple) in skip:
                    continue
                delta = AT_S.get(neck) if multiple == 1 else at_2s.get(neck)
                ap = neck_ap(neck, seed, delta) + (multiple - 1) * GAIN
                small = ap / 4 if neck in ("c4", "c5") else ap / 2
                write_run(out, detector, neck, seed, multiple * S, ap, small)


def costs(neck, gflops):
    return CellCosts(
        "faster_rcnn", neck, "h", "CPU, 1 thread(s)", [256, 256], 1, 10**6, 10**5, gflops,
        2.0, gflops - 2.0, 5.0, 4.0, 100.0, 90.0, 400.0, 5.0, "peak RSS",
    )  # fmt: skip


def summary(tool, out):
    with open(tool.write_summary(tool.make_report(str(out), S), str(out)), encoding="utf-8") as f:
        return f.read()


def line_of(text, start):
    """The one line of ``text`` that starts with ``start``."""
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return line


def claim_line(text, claim, detector="Faster R-CNN"):
    """The row of the claim that starts with ``claim``, with ``detector``, in the claims table."""
    start, middle = f"| {claim}", f" | {detector} | "
    (line,) = [line for line in text.splitlines() if line.startswith(start) and middle in line]
    return line


@pytest.mark.parametrize("nasfpn_at_2s, qualifies", [(1.0, True), (-1.5, False)])
def test_complete_grid_checks_claims_and_the_schedule_from_the_records(
    tool, tmp_path, nasfpn_at_2s, qualifies
):
    write_grid(tool, tmp_path, {"panet": -2.0, "bifpn": 0.5, "nasfpn": nasfpn_at_2s})
    ledger = Ledger(tool.schedule_folder(str(tmp_path), S))
    ledger.write_costs(costs("fpn", 3.0))
    ledger.write_costs(costs("bifpn", 2.5))
    text = summary(tool, tmp_path)
    assert "Incomplete" not in text and "Complete: all 51 runs recorded." in text
    assert "`aaaaaaaaaaaa` (51 runs)" in text

    # NAS-FPN +2 and BiFPN +1 (fewer GFLOPs) hold, PANet -3 does not: intervals +-0.43
    assert "**holds**" in claim_line(text, "NAS-FPN above FPN on AP", "RetinaNet")
    assert "**does not hold**" in claim_line(text, "PANet above FPN on AP", "RetinaNet")
    nasfpn = claim_line(text, "NAS-FPN above FPN on AP")
    assert "| AP +2.0 [+1.6, +2.4], 3 seeds |" in nasfpn and "**holds**" in nasfpn
    assert "**does not hold**" in claim_line(text, "PANet above FPN on AP")
    bifpn = claim_line(text, "BiFPN at least FPN's AP at fewer GFLOPs")
    assert "GFLOPs 2.50 vs 3.00" in bifpn and "**holds**" in bifpn
    bifpn_retinanet = claim_line(text, "BiFPN at least FPN's AP at fewer GFLOPs", "RetinaNet")
    assert "**not decided (GFLOPs not measured)**" in bifpn_retinanet
    p2_only = claim_line(text, "FPN above FPN, P2 only on AP")
    assert "**not decided (the interval contains 0)**" in p2_only
    # AP_S: FPN's half its AP, C4's a quarter of its AP 5 lower
    c4 = claim_line(text, "FPN above C4 (single scale) on AP_S")
    ratio = (sum(FPN_BY_SEED.values()) / 2) / sum((neck_ap("c4", s, -5.0) / 4) for s in (1, 2, 3))
    assert f"AP_S ratio of the means {ratio:.2f}x" in c4 and "**holds**" in c4

    assert "| FPN | (baseline) | (baseline) | – | +5.0 [+5.0, +5.0], 3 seeds |" in text
    assert "**holds (the sign is kept)**" in line_of(text, "| PANet | -3.0")
    nasfpn = line_of(text, "| NAS-FPN | +2.0")
    if qualifies:
        assert f"**S = {S} qualifies**" in text and "**holds (the sign is kept)**" in nasfpn
    else:
        assert (
            f"**S = {S} does not qualify: double S (issue 23)** (the sign flips with 3 seeds)"
            in text
        )
        assert "**does not hold (the sign flips)**" in nasfpn and "-1.5 [" in nasfpn
    assert os.path.isfile(tmp_path / "learning_curves_AP.png")
    assert "![AP_S](learning_curves_AP_S.png)" in text


def test_incomplete_grid_lists_the_missing_runs_and_decides_nothing_from_one_seed(tool, tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, "faster_rcnn", "fpn", seed, S, FPN_BY_SEED[seed], 20.0)
    write_run(tmp_path, "faster_rcnn", "panet", 1, S, 60.0, 30.0)
    write_run(tmp_path, "faster_rcnn", "panet", 1, 2 * S, 70.0, 30.0)
    for seed in (1, 2):
        write_run(tmp_path, "faster_rcnn", "nasfpn", seed, S, neck_ap("nasfpn", seed, 2.0), 20.0)
    text = summary(tool, tmp_path)
    # every section says it is incomplete
    sections = text.split("\n## ")[1:]
    assert len(sections) == 5 and all("**Incomplete: " in section for section in sections)
    assert "**Incomplete: 7 of 51 runs recorded.**" in text
    row = line_of(text, "| Faster R-CNN, paper necks, S |")
    assert row == (
        f"| Faster R-CNN, paper necks, S | {S} | 6 / 12 | PANet: 2, 3; BiFPN: 1, 2, 3; "
        "NAS-FPN: 3 |"
    )
    panet = claim_line(text, "PANet above FPN on AP")
    assert "AP +10.0, 1 seed (no interval)" in panet
    assert "**not decided (1 paired seed: no interval)**" in panet
    # 2 seeds: an interval (+2.05 +- 1.91), and a verdict that says it has 2 of the 3 seeds
    nasfpn = claim_line(text, "NAS-FPN above FPN on AP")
    assert "AP +2.1 [+0.1, +4.0], 2 seeds" in nasfpn
    assert "**holds (so far: 2 of 3 seeds)**" in nasfpn
    bifpn = claim_line(text, "BiFPN at least")
    assert "**no runs yet (no run of BiFPN)**" in bifpn
    retina = claim_line(text, "PANet above FPN on AP", "RetinaNet")
    assert "**no runs yet (no run of PANet; no run of FPN)**" in retina
    panet = line_of(text, "| PANet | +10.0")
    assert (
        "**no runs yet (no seed paired with FPN at 2S)** | +10.0, 1 seed (no interval) |" in panet
    )
    overall = "no seed paired with FPN at 2S; no seed paired with FPN at S"
    assert f"**No runs yet** ({overall})." in text
    assert "RetinaNet: **Incomplete: 0 of 12 runs recorded.**" in text


def diff(values, baseline=FPN_BY_SEED):
    return paired_difference(dict(enumerate(values, 1)), baseline)


def test_the_schedule_criterion_keeps_or_flips_the_sign_of_each_difference():
    def at(delta, n=3):
        return diff([FPN_BY_SEED[s] + delta + JITTER[s] for s in (1, 2, 3)][:n])

    verdict = claims.schedule_verdict
    assert verdict(at(-2.0), at(-0.1)) == claims.Verdict(claims.HOLDS, "the sign is kept")
    assert verdict(at(0.1), at(-0.1)).reason == "both intervals contain 0"
    assert verdict(at(2.0), at(-2.0)) == claims.Verdict(claims.FAILS, "the sign flips")
    # a clear difference at S that is no longer clear, and of the other sign, at 2S: flipped
    assert verdict(at(2.0), at(-0.1)).kind == claims.FAILS
    assert verdict(at(2.0, n=1), at(2.0)).kind == claims.UNDECIDED
    assert verdict(at(2.0), diff([])).kind == claims.NO_RUNS

    def check(at_s, at_2s):
        return claims.ScheduleCheck("panet", at_s, at_2s, at_2s, verdict(at_s, at_2s))

    flip_with_two = check(at(2.0, n=2), at(-2.0, n=2))
    assert claims.schedule_overall([check(at(1.0), at(1.0))]).kind == claims.HOLDS
    assert claims.schedule_overall([check(at(1.0), at(1.0)), flip_with_two]).kind == (
        claims.UNDECIDED
    )
    assert claims.schedule_overall([check(at(1.0), at(1.0, n=2))]).reason == (
        "holds so far; under 3 seeds: PANet"
    )
    assert claims.schedule_overall([check(at(2.0), at(-2.0)), flip_with_two]).kind == (claims.FAILS)


def test_a_verdict_needs_an_interval_that_excludes_zero():
    assert claims.difference_verdict(diff([52.0, 53.1, 51.4])).kind == claims.HOLDS
    assert claims.difference_verdict(diff([48.0, 48.9, 47.6])).kind == claims.FAILS
    assert claims.difference_verdict(diff([50.5, 50.6, 49.0])).kind == claims.UNDECIDED
    assert (
        str(claims.difference_verdict(diff([60.0]))) == "not decided (1 paired seed: no interval)"
    )
    combine = claims.combine
    holds, fails = claims.Verdict(claims.HOLDS), claims.Verdict(claims.FAILS, "x")
    undecided = claims.Verdict(claims.UNDECIDED, "GFLOPs not measured")
    assert combine([holds, undecided]) == undecided and combine([undecided, fails]) == fails
    assert combine([holds, holds]) == holds


def test_costs_only_with_no_costs_is_refused(tool, tmp_path, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--out", str(tmp_path), "--costs-only", "--no-costs"])
    assert "--costs-only measures the costs that --no-costs skips" in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # refused before anything is written


# A page of the reference: hand-written prose around the block --report rewrites.
PAGE_BEFORE = "# The reference\n\nHand-written.\n\n<!-- reference-summary:begin -->\n"
PAGE_AFTER = "<!-- reference-summary:end -->\n\n## What it says\n\nHand-written too.\n"
PAGE = PAGE_BEFORE + "a stale block\n" + PAGE_AFTER
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def reported_block(tool, out, path, option: str, before: str, after: str) -> str:
    """The block of the file ``path`` (``before`` + a stale block + ``after``) after ``--report``
    with ``option`` ``path``; the text around it is kept."""
    path.write_text(before + "stale\n" + after, encoding="utf-8")
    tool.main(["--out", str(out), "--schedule", str(S), "--report", option, str(path)])
    text = path.read_text(encoding="utf-8")
    assert text.startswith(before) and text.endswith(after)
    return text[len(before) : -len(after)]


def test_the_report_rewrites_the_block_of_the_page_with_links_relative_to_it(tool, tmp_path):
    out, page = tmp_path / "docs" / "reference", tmp_path / "docs" / "page.md"
    for seed in (1, 2):
        write_run(out, "faster_rcnn", "fpn", seed, S, FPN_BY_SEED[seed], 20.0)
    block = reported_block(tool, out, page, "--page", PAGE_BEFORE, PAGE_AFTER)
    assert block.startswith(
        f"Generated from runs at commit `{'a' * 12}` (2 runs) by `make reference`, then "
        "`python tools/reference.py --report`"
    )
    pictures = PICTURE.findall(block)
    assert pictures == ["reference/learning_curves_AP.png", "reference/learning_curves_AP_S.png"]
    assert all((page.parent / picture).is_file() for picture in pictures)
    assert "[neck_flops.md](reference/neck_flops.md)" in block and f"`reference/S{S}/`" in block
    # summary.md: the same sections under its title, its links from the reference folder
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert PICTURE.findall(summary) == ["learning_curves_AP.png", "learning_curves_AP_S.png"]
    from_summary = block.replace("](reference/", "](").replace("`reference/S", "`S")
    title = "# The long-schedule reference: summary\n\n"
    assert summary.rstrip("\n") == title + from_summary.rstrip("\n")
    assert "**Incomplete: 2 of 51 runs recorded.**" in block


def test_a_page_without_the_markers_is_refused_before_anything_is_written(tool, tmp_path, capsys):
    page, out = tmp_path / "page.md", tmp_path / "out"
    page.write_text("# A page\n\nno block\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        tool.main(["--out", str(out), "--report", "--page", str(page)])
    assert (
        f"{page} has no '<!-- reference-summary:begin -->' ... '<!-- reference-summary:end -->' "
        "markers" in capsys.readouterr().err
    )
    assert not out.exists() and page.read_text(encoding="utf-8") == "# A page\n\nno block\n"
    with pytest.raises(SystemExit):
        tool.main(["--out", str(out), "--report", "--page", str(tmp_path / "none.md")])
    assert "none.md: no such file" in capsys.readouterr().err


def test_only_the_reference_folder_rewrites_the_page_and_readme_by_default(
    tool, tmp_path, monkeypatch
):
    """A report into another folder (every test's) leaves the repository's page and README
    alone."""
    page, readme, out = tmp_path / "page.md", tmp_path / "README.md", tmp_path / "out"
    page.write_text(PAGE, encoding="utf-8")
    readme.write_text(README, encoding="utf-8")
    monkeypatch.setattr(tool, "PAGE", str(page))
    monkeypatch.setattr(tool, "README", str(readme))
    write_run(out, "faster_rcnn", "fpn", 1, S, FPN_BY_SEED[1], 20.0)
    tool.main(["--out", str(out), "--schedule", str(S), "--report"])
    assert page.read_text(encoding="utf-8") == PAGE and (out / "summary.md").is_file()
    assert readme.read_text(encoding="utf-8") == README
    monkeypatch.setattr(tool, "REFERENCE_FOLDER", str(out))
    tool.main(["--schedule", str(S), "--report"])
    assert "a stale block" not in page.read_text(encoding="utf-8")
    assert "a stale table" not in readme.read_text(encoding="utf-8")


# README: hand-written prose around the tables --report rewrites.
README_BEFORE = "## Comparison\n\nProse.\n\n<!-- reference-table:begin -->\n"
README_AFTER = "<!-- reference-table:end -->\n\nReading these numbers.\n"
README = README_BEFORE + "a stale table\n" + README_AFTER


def test_the_report_rewrites_readmes_tables_at_s_from_the_records(tool, tmp_path):
    out, readme = tmp_path / "docs" / "reference", tmp_path / "README.md"
    for seed in (1, 2):
        write_run(out, "faster_rcnn", "fpn", seed, S, FPN_BY_SEED[seed], 20.0)
        write_run(out, "faster_rcnn", "bifpn", seed, S, FPN_BY_SEED[seed] - 3.0, 19.0)
    block = reported_block(tool, out, readme, "--readme", README_BEFORE, README_AFTER)
    assert block.startswith(
        f"Generated from runs at commit `{'a' * 12}` (4 runs) by `make reference`"
    )
    assert f"`docs/reference/S{S}/`" in block  # the records, as seen from README
    assert "### Faster R-CNN" in block and "### RetinaNet" in block
    assert "## " not in block.replace("### ", "")  # no heading above README's own
    bifpn = next(line for line in block.splitlines() if line.startswith("| BiFPN |"))
    assert "| -3.0 [" in bifpn  # its difference to FPN, paired by seed
    # the page's other sections are not README's
    assert "## The schedule" not in block and "claims" not in block
    with pytest.raises(SystemExit):
        tool.main(["--out", str(out), "--report", "--readme", str(tmp_path / "page.md")])
