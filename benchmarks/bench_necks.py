"""Neck latency of fpn_variants against the peer implementations, in one process.

Each pair runs on identical input tensors (batch 1, eval mode, no grad; ours through
:func:`fpn_variants.optimize.optimize_for_inference`, training steps on the plain model), timed in
turns so that machine noise falls on both alike; the ratio ours/peer uses medians. Ours is also
timed in bfloat16 (the same optimized copy under ``torch.autocast``, as
``optimize_for_inference(..., dtype=torch.bfloat16)`` runs it) in the same turns; the peers run
float32. Also reports
this machine's conv roofline and the fraction of it each neck achieves (fvcore FLOPs / latency /
roofline).

    python benchmarks/bench_necks.py [--repeats 10] [--threads 2] [--out output/bench_necks]

Writes OUT/results.json, with the commit of the code and the command that made it.
"""

import argparse
import json
import os
from typing import Callable, Dict, List, Optional

import torch

from fpn_variants.analysis import count_neck_flops, interleaved_latency, roofline_conv
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.optimize import optimize_for_inference
from fpn_variants.peer_pairs import COST_ONLY, PAIRS, Pair, max_rel_diff
from fpn_variants.provenance import command_line


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="substrings of pair names to run")
    parser.add_argument("--train", action="store_true", help="also time training steps")
    parser.add_argument(
        "--profile", action="store_true", help="also print torch.profiler's costliest ops"
    )
    parser.add_argument("--out", default="output/bench_necks")
    return parser


def new_results(args: argparse.Namespace, argv: Optional[List[str]] = None) -> Dict:
    """The results before any pair is timed: the settings, and the commit of the code and the
    command that make them (README's table names both)."""
    return {
        "commit": git_commit(),
        "command": command_line("benchmarks/bench_necks.py", argv),
        "threads": args.threads,
        "repeats": args.repeats,
        "pairs": {},
    }


def main(argv: List[str] = None) -> None:
    args = argument_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    roofline = roofline_conv()
    print(
        f"threads={args.threads}; FLOPs: fvcore (1 multiply-add = 1 flop); latency: batch 1, "
        f"eval, no grad, median of {args.repeats} interleaved runs"
    )
    results = new_results(args, argv)
    for name, make in PAIRS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        try:
            pair = make()
        except ImportError as e:
            print(f"{name}: peer not installed ({e}); skipped")
            results["pairs"][name] = {"skipped": str(e)}
            continue
        results["pairs"][name] = measure_pair(name, pair, args, roofline)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


def measure_pair(name: str, pair: Pair, args: argparse.Namespace, roofline) -> Dict:
    """One pair's FLOPs, latencies (ours fp32 and bf16, peer, the roofline conv, in turns), their
    ratios and output differences; with ``args.train`` its training steps too."""
    roof_call, roof_flops = roofline
    pair.peer.eval()
    flops = count_neck_flops(pair.ours.eval(), pair.feats)  # of the plain model
    fast = pair._replace(ours=optimize_for_inference(pair.ours))

    def ours_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fast.ours_call()

    with torch.no_grad():
        diff = None if name in COST_ONLY else max_rel_diff(fast.ours_call(), pair.peer_call())
        bf16_diff = max_rel_diff(ours_bf16(), fast.ours_call())
        calls = {"ours": fast.ours_call, "ours_bf16": ours_bf16, "peer": pair.peer_call}
        stats = interleaved_latency({**calls, "roofline": roof_call}, repeats=args.repeats)
    ratio = stats["ours"]["median"] / stats["peer"]["median"]
    bf16_ratio = stats["ours_bf16"]["median"] / stats["ours"]["median"]
    roof_rate = roof_flops / stats["roofline"]["median"] / 1e9
    fraction = flops / stats["ours"]["median"] / 1e9 / roof_rate
    print(
        f"{name:32s} ours {stats['ours']['median'] * 1e3:8.1f} ms  peer "
        f"{stats['peer']['median'] * 1e3:8.1f} ms  ratio {ratio:5.2f}  "
        f"{flops / 1e9:6.2f} GFLOPs  {fraction * 100:5.1f}% of roofline "
        f"({roof_rate:.0f} GFLOP/s)  rel. diff {'-' if diff is None else f'{diff:.1e}'}  "
        f"bf16 {stats['ours_bf16']['median'] * 1e3:.1f} ms ({bf16_ratio:.2f} x fp32, rel. "
        f"diff {bf16_diff:.1e})"
    )
    result = dict(
        stats, ratio=ratio, gflops=flops / 1e9, roofline_gflops_per_s=roof_rate,
        roofline_fraction=fraction, max_rel_diff=diff, bf16_ratio=bf16_ratio,
        bf16_max_rel_diff=bf16_diff,
    )  # fmt: skip
    if args.profile:
        print_profile(fast)
    if args.train:
        train = training_step_ratio(pair, args.repeats)
        # forward + backward is about 3x the forward's multiply-adds
        train["roofline_fraction"] = 3 * flops / train["ours"]["median"] / 1e9 / roof_rate
        result["train"] = train
    return result


def print_profile(pair: Pair, forwards: int = 5, rows: int = 8) -> None:
    """The ops with the most self CPU time, by input shape, over ``forwards`` eval forwards of
    ours and of the peer."""
    for label, call in (("ours", pair.ours_call), ("peer", pair.peer_call)):
        with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
            for _ in range(forwards):
                call()
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=rows
        )
        print(f"{label}: torch.profiler, {forwards} forwards\n{table}")


def training_step_ratio(pair: Pair, repeats: int) -> Dict[str, float]:
    """A training step (train mode, forward + backward of the mean of every output) of our neck
    against the peer's, which is the straightforward implementation of the same function."""
    pair.ours.train()
    pair.peer.train()
    steps = pair.training_steps()
    stats = interleaved_latency(steps, repeats=repeats)
    shares = {label: conv_share(run) for label, run in steps.items()}
    pair.ours.eval()
    pair.peer.eval()
    ratio = stats["ours"]["median"] / stats["peer"]["median"]
    print(
        f"{'':32s} training step: ours {stats['ours']['median'] * 1e3:8.1f} ms  peer "
        f"{stats['peer']['median'] * 1e3:8.1f} ms  ratio {ratio:5.2f}  convolutions "
        f"{shares['ours'] * 100:.0f}% / {shares['peer'] * 100:.0f}% of the step"
    )
    return dict(stats, ratio=ratio, conv_share=shares)


def conv_share(run: Callable[[], None], steps: int = 2) -> float:
    """Fraction of ``run``'s CPU time (torch.profiler, ops' self time over ``steps`` calls) spent
    in convolution kernels, forward and backward (oneDNN's and ATen's)."""
    with torch.profiler.profile() as prof:
        for _ in range(steps):
            run()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower())
    return conv / total


if __name__ == "__main__":
    main()
