"""What the papers claim and whether a schedule is long enough, checked from a comparison's rows.

Every check is a verdict computed from differences paired by seed with their 95% Student-t
intervals (:func:`.stats.paired_difference`), never from a single mean:

- ``holds``: the interval lies on the claimed side of 0;
- ``does not hold``: it lies on the other side;
- ``not decided``: it contains 0, or fewer than 2 seeds are paired (no interval);
- ``no runs yet``: a cell the check needs has no run.

:data:`PAPER_CLAIMS` lists the claims of the FPN, PANet, EfficientDet (BiFPN) and NAS-FPN papers
that a comparison of this package's necks can test; :func:`schedule_checks` tests the criterion of
issue 23 (a schedule S qualifies when no neck's difference to FPN flips sign at 2S).
"""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .cells import DETECTORS, NECKS, PAPER_NECKS
from .stats import BASELINE, CellSummary, PairedDifference, paired_difference

__all__ = [
    "FAILS",
    "HOLDS",
    "NO_RUNS",
    "PAPER_CLAIMS",
    "UNDECIDED",
    "Claim",
    "ClaimCheck",
    "ScheduleCheck",
    "Verdict",
    "check_claim",
    "check_claims",
    "combine",
    "difference_verdict",
    "format_difference",
    "render_claims",
    "render_schedule",
    "schedule_checks",
    "schedule_overall",
    "schedule_verdict",
]

HOLDS = "holds"
FAILS = "does not hold"
UNDECIDED = "not decided"
NO_RUNS = "no runs yet"
# combine(): the verdict of a conjunction is its first kind present, in this order.
_PRECEDENCE = (FAILS, NO_RUNS, UNDECIDED, HOLDS)


@dataclass(frozen=True)
class Verdict:
    """One of :data:`HOLDS`, :data:`FAILS`, :data:`UNDECIDED`, :data:`NO_RUNS`, and why."""

    kind: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.kind} ({self.reason})" if self.reason else self.kind


@dataclass(frozen=True)
class Claim:
    """A paper's claim that neck ``better`` beats neck ``worse`` with ``detector`` on the box
    metric ``metric`` ("AP", "APs", ...); ``cheaper``: and at fewer GFLOPs (whole model, from
    the cost records); ``ratio``: also report ``better``'s mean over ``worse``'s."""

    text: str
    source: str
    detector: str
    better: str
    worse: str
    metric: str = "AP"
    cheaper: bool = False
    ratio: bool = False


# The FPN paper's rows for each baseline (Lin et al. 2017, R50 on COCO minival): its table,
# and FPN's box AP (or AP_S) against the baseline's there. C4 and C5 are Faster R-CNN (Table 3);
# the ablations are Fast R-CNN on fixed FPN proposals (Table 2; Table 1 has them as RPNs).
_FPN_PAPER_ROWS = {
    ("c4", "AP"): ("Table 3 (a)", 33.9, 31.6),
    ("c4", "APs"): ("Table 3 (a)", 17.8, 13.2),
    ("c5", "AP"): ("Table 3 (b)", 33.9, 28.0),
    ("c5", "APs"): ("Table 3 (b)", 17.8, 9.6),
    ("bottom_up", "AP"): ("Table 2 (d)", 33.9, 24.9),
    ("top_down", "AP"): ("Table 2 (e)", 33.9, 31.3),
    ("fpn_p2", "AP"): ("Table 2 (f)", 33.9, 33.4),
}


def _fpn_paper(worse: str, metric: str = "AP") -> Claim:
    """FPN above ``worse`` on ``metric``, with the paper's numbers; on AP_S also the ratio."""
    table, fpn, baseline = _FPN_PAPER_ROWS[worse, metric]
    small = metric == "APs"
    name = "AP_S" if small else metric
    paper = f"{fpn} against {baseline}" + (f", {fpn / baseline:.2f}x" if small else "")
    text = f"FPN above {NECKS[worse][0]} on {name} (paper: {paper})"
    return Claim(text, f"FPN paper, {table}", "faster_rcnn", BASELINE, worse, metric, ratio=small)


# EfficientDet's Table 5 (Tan et al. 2020): each neck against a repeated top-down FPN (42.29 AP)
# on the same backbone and heads, all convs depthwise separable; the one table of the three papers
# that compares all four necks. The PANet and NAS-FPN papers' own ablations are not quoted here.
_TABLE_5 = {
    "panet": "44.08 against 42.29",
    "bifpn": "44.39 against 42.29 at 0.68x the FLOPs",
    "nasfpn": "43.16 against 42.29",
}


def _over_fpn(neck: str, detector: str, source: str, cheaper: bool = False) -> Claim:
    label = NECKS[neck][0]
    claim = "at least FPN's AP at fewer GFLOPs" if cheaper else "above FPN on AP"
    text = f"{label} {claim} (EfficientDet Table 5: {_TABLE_5[neck]})"
    return Claim(text, source, detector, neck, BASELINE, cheaper=cheaper)


PAPER_CLAIMS = (
    *(_fpn_paper(single, metric) for single in ("c4", "c5") for metric in ("AP", "APs")),
    *(_fpn_paper(ablation) for ablation in ("bottom_up", "top_down", "fpn_p2")),
    *(_over_fpn("panet", d, "PANet paper") for d in ("faster_rcnn", "retinanet")),
    *(_over_fpn("bifpn", d, "EfficientDet paper", True) for d in ("faster_rcnn", "retinanet")),
    *(_over_fpn("nasfpn", d, "NAS-FPN paper") for d in ("faster_rcnn", "retinanet")),
)  # fmt: skip


def _contains_zero(diff: PairedDifference) -> bool:
    return diff.ci95 is not None and diff.ci95[0] <= 0 <= diff.ci95[1]


def difference_verdict(diff: PairedDifference) -> Verdict:
    """Whether ``diff`` (a - b, paired by seed) shows a above b."""
    if diff.n == 0:
        return Verdict(UNDECIDED, "no seed run by both")
    if diff.ci95 is None:
        return Verdict(UNDECIDED, f"{diff.n} paired seed: no interval")
    if _contains_zero(diff):
        return Verdict(UNDECIDED, "the interval contains 0")
    return Verdict(HOLDS if diff.mean > 0 else FAILS)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """The verdict of "all of ``verdicts``": does not hold if one does not, else no runs yet if
    one has none, else not decided if one is not, else holds; with those verdicts' reasons."""
    for kind in _PRECEDENCE:
        reasons = [v.reason for v in verdicts if v.kind == kind and v.reason]
        if any(v.kind == kind for v in verdicts):
            return Verdict(kind, "; ".join(dict.fromkeys(reasons)))
    raise ValueError("combine() needs at least one verdict")


def format_difference(diff: Optional[PairedDifference]) -> str:
    """``diff`` as "+1.2 [+0.3, +2.1], 3 seeds", or "+1.2, 1 seed (no interval)"."""
    if diff is None or diff.mean is None:
        return "–"
    seeds = f"{diff.n} seed{'s' if diff.n > 1 else ''}"
    if diff.ci95 is None:
        return f"{diff.mean:+.1f}, {seeds} (no interval)"
    return f"{diff.mean:+.1f} [{diff.ci95[0]:+.1f}, {diff.ci95[1]:+.1f}], {seeds}"


def _row(rows: Sequence[CellSummary], detector: str, neck: str) -> Optional[CellSummary]:
    return next((r for r in rows if (r.detector, r.neck) == (detector, neck)), None)


def _by_seed(row: Optional[CellSummary], metric: str) -> Dict[int, float]:
    summary = row.metric(metric) if row is not None else None
    return dict(summary.by_seed) if summary is not None else {}


@dataclass
class ClaimCheck:
    """A claim, the paired difference (better - worse) it rests on, its verdict and notes (the
    ratio of the means, the GFLOPs)."""

    claim: Claim
    difference: Optional[PairedDifference]
    verdict: Verdict
    notes: List[str] = field(default_factory=list)


def _cheaper(better: Optional[CellSummary], worse: Optional[CellSummary]):
    """(verdict, note) of "``better`` has fewer GFLOPs than ``worse``" from their cost records."""
    if better is None or worse is None or better.costs is None or worse.costs is None:
        return Verdict(UNDECIDED, "GFLOPs not measured"), "GFLOPs not measured (no cost record)"
    b, w = better.costs, worse.costs
    note = (
        f"GFLOPs {b.gflops:.2f} vs {w.gflops:.2f} (necks {b.neck_gflops:.2f} vs "
        f"{w.neck_gflops:.2f}), on {b.device}"
    )
    fewer = b.gflops < w.gflops
    return Verdict(HOLDS if fewer else FAILS, "" if fewer else "not fewer GFLOPs"), note


def _ratio_note(better: Dict[int, float], worse: Dict[int, float], metric: str) -> str:
    mean_better, mean_worse = sum(better.values()) / len(better), sum(worse.values()) / len(worse)
    name = "AP_S" if metric == "APs" else metric
    if mean_worse <= 0:
        return f"{name} ratio undefined (mean {mean_worse:.1f})"
    return f"{name} ratio of the means {mean_better / mean_worse:.2f}x"


def check_claim(claim: Claim, rows: Sequence[CellSummary], seeds: int = 3) -> ClaimCheck:
    """The verdict of ``claim`` on ``rows`` (the :func:`.stats.summarize` rows of one schedule);
    one decided with fewer than ``seeds`` paired seeds says so."""
    better, worse = _row(rows, claim.detector, claim.better), _row(
        rows, claim.detector, claim.worse
    )
    values = _by_seed(better, claim.metric), _by_seed(worse, claim.metric)
    missing = [
        f"no run of {NECKS[n][0]}" for n, v in zip((claim.better, claim.worse), values) if not v
    ]
    if missing:
        return ClaimCheck(claim, None, Verdict(NO_RUNS, "; ".join(missing)))
    difference = paired_difference(*values)
    verdict = difference_verdict(difference)
    if verdict.kind in (HOLDS, FAILS) and difference.n < seeds:
        verdict = Verdict(verdict.kind, f"so far: {difference.n} of {seeds} seeds")
    verdicts, notes = [verdict], []
    if claim.ratio:
        notes.append(_ratio_note(*values, claim.metric))
    if claim.cheaper:
        verdict, note = _cheaper(better, worse)
        verdicts.append(verdict)
        notes.append(note)
    return ClaimCheck(claim, difference, combine(verdicts), notes)


def check_claims(
    rows: Sequence[CellSummary], claims: Sequence[Claim] = PAPER_CLAIMS, seeds: int = 3
) -> List[ClaimCheck]:
    """:func:`check_claim` of each of ``claims``, in their order."""
    return [check_claim(claim, rows, seeds) for claim in claims]


def render_claims(checks: Sequence[ClaimCheck]) -> str:
    """The checked claims as a Markdown table."""
    lines = [
        "| claim | source | detector | Δ (paired by seed, 95% interval) | notes | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in checks:
        name = "AP_S" if c.claim.metric == "APs" else c.claim.metric
        difference = format_difference(c.difference)
        if c.difference is not None:
            difference = f"{name} {difference}"
        notes = "; ".join(c.notes) or "–"
        cells = [c.claim.text, c.claim.source, DETECTORS[c.claim.detector], difference, notes]
        lines.append("| " + " | ".join([*cells, f"**{c.verdict}**"]) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class ScheduleCheck:
    """One neck of the schedule criterion (box AP): its difference to FPN at S and at 2S (None
    for FPN itself), its own gain from S to 2S, all paired by seed, and the criterion's verdict
    (None for FPN)."""

    neck: str
    at_s: Optional[PairedDifference]
    at_2s: Optional[PairedDifference]
    gain: PairedDifference
    verdict: Optional[Verdict]


def schedule_verdict(at_s: PairedDifference, at_2s: PairedDifference) -> Verdict:
    """Issue 23's criterion for one neck: its difference to FPN keeps its sign from S to 2S, or
    both intervals contain 0 (the ranking against FPN does not flip)."""
    pairs = ((at_s, "S"), (at_2s, "2S"))
    for diff, where in pairs:
        if diff.n == 0:
            return Verdict(NO_RUNS, f"no seed paired with FPN at {where}")
    for diff, where in pairs:
        if diff.ci95 is None:
            return Verdict(UNDECIDED, f"{diff.n} paired seed at {where}: no interval")
    if _contains_zero(at_s) and _contains_zero(at_2s):
        return Verdict(HOLDS, "both intervals contain 0")
    if math.copysign(1, at_s.mean) == math.copysign(1, at_2s.mean):
        return Verdict(HOLDS, "the sign is kept")
    return Verdict(FAILS, "the sign flips")


def schedule_checks(
    rows_s: Sequence[CellSummary],
    rows_2s: Sequence[CellSummary],
    detector: str = "faster_rcnn",
    necks: Sequence[str] = PAPER_NECKS,
) -> List[ScheduleCheck]:
    """The :class:`ScheduleCheck` of each of ``necks`` from the rows at S and at 2S."""
    values_s = {n: _by_seed(_row(rows_s, detector, n), "AP") for n in necks}
    values_2s = {n: _by_seed(_row(rows_2s, detector, n), "AP") for n in necks}
    checks = []
    for neck in necks:
        gain = paired_difference(values_2s[neck], values_s[neck])
        if neck == BASELINE:
            checks.append(ScheduleCheck(neck, None, None, gain, None))
            continue
        at_s = paired_difference(values_s[neck], values_s.get(BASELINE, {}))
        at_2s = paired_difference(values_2s[neck], values_2s.get(BASELINE, {}))
        checks.append(ScheduleCheck(neck, at_s, at_2s, gain, schedule_verdict(at_s, at_2s)))
    return checks


def schedule_overall(checks: Sequence[ScheduleCheck], seeds: int = 3) -> Verdict:
    """Whether S qualifies: it does (holds) only when every neck's criterion holds with ``seeds``
    paired seeds at S and at 2S; it does not when a neck's sign flips with ``seeds`` paired
    seeds; a flip seen with fewer seeds is not decided yet."""
    judged = [c for c in checks if c.verdict is not None]
    overall = combine([c.verdict for c in judged])
    if overall.kind not in (HOLDS, FAILS):
        return overall
    deciding = [c for c in judged if c.verdict.kind == overall.kind]
    short = [NECKS[c.neck][0] for c in deciding if min(c.at_s.n, c.at_2s.n) < seeds]
    if overall.kind == FAILS and len(short) < len(deciding):
        return Verdict(FAILS, f"the sign flips with {seeds} seeds")
    if short:
        so_far = "holds" if overall.kind == HOLDS else "flips"
        return Verdict(UNDECIDED, f"{so_far} so far; under {seeds} seeds: {', '.join(short)}")
    return overall


def render_schedule(checks: Sequence[ScheduleCheck]) -> str:
    """The criterion as a Markdown table, one row per neck."""
    lines = [
        "| neck | ΔAP to FPN at S | ΔAP to FPN at 2S | criterion | AP gain from S to 2S |",
        "|---|---|---|---|---|",
    ]
    for c in checks:
        at_s, at_2s = (
            ("(baseline)", "(baseline)")
            if c.verdict is None
            else (format_difference(c.at_s), format_difference(c.at_2s))
        )
        verdict = "–" if c.verdict is None else f"**{c.verdict}**"
        cells = [NECKS[c.neck][0], at_s, at_2s, verdict, format_difference(c.gain)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
