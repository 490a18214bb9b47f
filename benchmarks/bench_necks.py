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
"""

import argparse
import copy
import json
import os
from typing import Callable, Dict, List, NamedTuple

import torch
from detectron2.modeling import Backbone

from fpn_variants import FPN, NASFPN, BiFPN, PANet, PyramidNeck
from fpn_variants.analysis import count_neck_flops, interleaved_latency, roofline_conv
from fpn_variants.optimize import optimize_for_inference
from fpn_variants.peers import import_peer

R50 = {2: 256, 3: 512, 4: 1024, 5: 2048}


class GivenFeatures(Backbone):
    """A bottom-up stand-in returning fixed features, so that a full forward times the neck."""

    def __init__(self, channels: Dict[int, int]):
        super().__init__()
        self.features: Dict[str, torch.Tensor] = {}
        self._out_features = [f"res{lvl}" for lvl in channels]
        self._out_feature_channels = {f"res{lvl}": ch for lvl, ch in channels.items()}
        self._out_feature_strides = {f"res{lvl}": 2**lvl for lvl in channels}

    def forward(self, x):
        return self.features


def make_features(channels: Dict[int, int], size: int) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        f"res{lvl}": torch.randn(1, ch, -(-size // 2**lvl), -(-size // 2**lvl), generator=gen)
        for lvl, ch in channels.items()
    }


class Pair(NamedTuple):
    """One benchmark pair: the peer module and how it is called on ``feats``, and our neck."""

    peer: torch.nn.Module
    peer_call: Callable[[], object]
    ours: PyramidNeck
    feats: Dict[str, torch.Tensor]

    def ours_call(self) -> object:
        return self.ours.forward_neck(self.feats)


def pair_detectron2_fpn(levels: str, size: int):
    from detectron2.modeling.backbone.fpn import FPN as D2FPN
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

    channels = R50 if levels == "p2p6" else {k: v for k, v in R50.items() if k >= 3}
    feats = make_features(channels, size)
    names = list(feats)
    bottom_up = GivenFeatures(channels)
    bottom_up.features = feats
    top = LastLevelMaxPool() if levels == "p2p6" else LastLevelP6P7(2048, 256)
    theirs = D2FPN(bottom_up=bottom_up, in_features=names, out_channels=256, top_block=top).eval()
    ours = FPN(
        bottom_up=GivenFeatures(channels),
        in_features=names,
        out_channels=256,
        num_extra_levels=1 if levels == "p2p6" else 2,
        extra_level_type="maxpool" if levels == "p2p6" else "conv",
    )
    ours.load_state_dict(theirs.state_dict(), strict=False)
    x = torch.zeros(1)
    return Pair(theirs, lambda: theirs(x), ours, feats)


def pair_effdet_bifpn(width: int, size: int):
    import effdet
    from effdet.efficientdet import BiFpn

    from fpn_variants.convert import convert_effdet_bifpn, load_neck_state_dict

    channels = {3: 40, 4: 112, 5: 320} if width == 64 else {3: 512, 4: 1024, 5: 2048}
    cfg = effdet.get_efficientdet_config("tf_efficientdet_d0")
    cfg.image_size = (size, size)
    cfg.fpn_channels = width
    info = [dict(num_chs=c, reduction=2**lvl) for lvl, c in channels.items()]
    theirs = BiFpn(cfg, copy.deepcopy(info)).eval()
    feats = make_features(channels, size)
    ours = BiFPN(
        bottom_up=GivenFeatures(channels),
        in_features=list(feats),
        out_channels=width,
        num_extra_levels=2,
    )
    load_neck_state_dict(ours, convert_effdet_bifpn(theirs.state_dict(), ours))
    inputs = list(feats.values())
    return Pair(theirs, lambda: theirs(list(inputs)), ours, feats)


def _mmdet_necks():
    return import_peer("mmdet.models.necks")


def pair_mmdet_fpn_p6_from_c5(size: int):
    """RetinaNet's FPN: P3-P7, P6 by a stride-2 conv on C5, ReLU, P7 (mmdet:
    ``add_extra_convs="on_input"``, ``relu_before_extra_convs=True``)."""
    channels = {k: v for k, v in R50.items() if k >= 3}
    theirs = _mmdet_necks().FPN(
        in_channels=list(channels.values()),
        out_channels=256,
        num_outs=5,
        add_extra_convs="on_input",
        relu_before_extra_convs=True,
    )
    feats = make_features(channels, size)
    ours = FPN(
        bottom_up=GivenFeatures(channels),
        in_features=list(feats),
        num_extra_levels=2,
        extra_level_type="conv",
    )
    # mmdet's names -> Detectron2's, which our FPN loads.
    names = {"lateral_convs": "fpn_lateral{}", "fpn_convs": "fpn_output{}"}
    extra = {3: "top_block.p6", 4: "top_block.p7"}
    state = {}
    for key, value in theirs.state_dict().items():
        kind, index, _, param = key.split(".")
        index = int(index)
        name = extra[index] if kind == "fpn_convs" and index in extra else None
        state[f"{name or names[kind].format(index + 3)}.{param}"] = value
    ours.load_state_dict(state, strict=False)
    inputs = tuple(feats.values())
    return Pair(theirs, lambda: theirs(inputs), ours, feats)


def pair_mmdet_pafpn(size: int):
    from fpn_variants.convert import convert_mmdet_pafpn, load_neck_state_dict

    theirs = _mmdet_necks().PAFPN(in_channels=list(R50.values()), out_channels=256, num_outs=5)
    feats = make_features(R50, size)
    ours = PANet(
        bottom_up=GivenFeatures(R50), in_features=list(feats), ordering="mmdet", activation=""
    )
    load_neck_state_dict(ours, convert_mmdet_pafpn(theirs.state_dict(), ours))
    inputs = tuple(feats.values())
    return Pair(theirs, lambda: theirs(inputs), ours, feats)


def pair_mmdet_nasfpn(size: int):
    from fpn_variants.convert import convert_mmdet_nasfpn, load_neck_state_dict

    theirs = (
        _mmdet_necks()
        .NASFPN(
            in_channels=list(R50.values()),
            out_channels=256,
            num_outs=5,
            stack_times=7,
            start_level=1,
            norm_cfg=dict(type="BN"),
        )
        .eval()
    )
    feats = make_features(R50, size)
    ours = NASFPN(
        bottom_up=GivenFeatures(R50),
        in_features=["res3", "res4", "res5"],
        num_extra_levels=2,
        reference="mmdet",
    )
    load_neck_state_dict(ours, convert_mmdet_nasfpn(theirs.state_dict(), ours))
    inputs = tuple(feats.values())
    return Pair(theirs, lambda: theirs(inputs), ours, feats)


def pair_centernet2_bifpn(size: int):
    from centernet.modeling.backbone.bifpn import BiFPN as CN2BiFPN

    channels = {k: v for k, v in R50.items() if k >= 3}
    feats = make_features(channels, size)
    bottom_up = GivenFeatures(channels)
    bottom_up.features = feats
    # CenterNet2's defaults: 160 channels, 6 layers, GN, regular convs, bias only without norm.
    theirs = CN2BiFPN(
        cfg=None,
        bottom_up=bottom_up,
        in_features=list(feats),
        out_channels=160,
        norm="GN",
        num_levels=5,
        num_bifpn=6,
        separable_conv=False,
    ).eval()
    ours = BiFPN(
        bottom_up=GivenFeatures(channels),
        in_features=list(feats),
        out_channels=160,
        num_extra_levels=2,
        num_repeats=6,
        separable_conv=False,
        norm="GN",
        redundant_bias=False,
    )
    x = torch.zeros(1)
    # Not the same function (CenterNet2 pools with kernel 2, effdet/TF with kernel 3 SAME), so the
    # outputs are not compared, only the cost.
    return Pair(theirs, lambda: theirs(x), ours, feats)


PAIRS: Dict[str, Callable] = {
    "detectron2 FPN P2-P6 @800": lambda: pair_detectron2_fpn("p2p6", 800),
    "detectron2 FPN P3-P7 @800": lambda: pair_detectron2_fpn("p3p7", 800),
    "effdet BiFPN D0 @512": lambda: pair_effdet_bifpn(64, 512),
    "effdet BiFPN R50 W256 D3 @640": lambda: pair_effdet_bifpn(256, 640),
    "mmdet FPN P3-P7 P6 from C5 @800": lambda: pair_mmdet_fpn_p6_from_c5(800),
    "mmdet PAFPN P2-P6 @800": lambda: pair_mmdet_pafpn(800),
    "mmdet NASFPN 7@256 @640": lambda: pair_mmdet_nasfpn(640),
    "CenterNet2 BiFPN W160 D6 @640": lambda: pair_centernet2_bifpn(640),
}
# Pairs whose outputs are not the same function (different pooling), compared on cost only.
COST_ONLY = {"CenterNet2 BiFPN W160 D6 @640"}


def max_rel_diff(a, b) -> float:
    """max |a - b| / max |b| over the output levels."""
    a = list(a.values()) if isinstance(a, dict) else list(a)
    b = list(b.values()) if isinstance(b, dict) else list(b)
    return max((x - y).abs().max().item() / y.abs().max().item() for x, y in zip(a, b))


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


def main(argv: List[str] = None) -> None:
    args = argument_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    roof_call, roof_flops = roofline_conv()
    print(
        f"threads={args.threads}; FLOPs: fvcore (1 multiply-add = 1 flop); latency: batch 1, "
        f"eval, no grad, median of {args.repeats} interleaved runs"
    )
    results = {"threads": args.threads, "repeats": args.repeats, "pairs": {}}
    for name, make in PAIRS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        try:
            pair = make()
        except ImportError as e:
            print(f"{name}: peer not installed ({e}); skipped")
            results["pairs"][name] = {"skipped": str(e)}
            continue
        pair.peer.eval()
        flops = count_neck_flops(pair.ours.eval(), pair.feats)  # of the plain model
        fast = pair._replace(ours=optimize_for_inference(pair.ours))
        with torch.no_grad():
            diff = None if name in COST_ONLY else max_rel_diff(fast.ours_call(), pair.peer_call())

        def ours_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fast.ours_call()

        with torch.no_grad():
            bf16_diff = max_rel_diff(ours_bf16(), fast.ours_call())
            stats = interleaved_latency(
                {
                    "ours": fast.ours_call,
                    "ours_bf16": ours_bf16,
                    "peer": pair.peer_call,
                    "roofline": roof_call,
                },
                repeats=args.repeats,
            )
        ratio = stats["ours"]["median"] / stats["peer"]["median"]
        bf16_ratio = stats["ours_bf16"]["median"] / stats["ours"]["median"]
        roofline = roof_flops / stats["roofline"]["median"] / 1e9
        fraction = flops / stats["ours"]["median"] / 1e9 / roofline
        results["pairs"][name] = dict(
            stats,
            ratio=ratio,
            gflops=flops / 1e9,
            roofline_gflops_per_s=roofline,
            roofline_fraction=fraction,
            max_rel_diff=diff,
            bf16_ratio=bf16_ratio,
            bf16_max_rel_diff=bf16_diff,
        )
        print(
            f"{name:32s} ours {stats['ours']['median'] * 1e3:8.1f} ms  peer "
            f"{stats['peer']['median'] * 1e3:8.1f} ms  ratio {ratio:5.2f}  "
            f"{flops / 1e9:6.2f} GFLOPs  {fraction * 100:5.1f}% of roofline "
            f"({roofline:.0f} GFLOP/s)  rel. diff {'-' if diff is None else f'{diff:.1e}'}  "
            f"bf16 {stats['ours_bf16']['median'] * 1e3:.1f} ms ({bf16_ratio:.2f} x fp32, rel. "
            f"diff {bf16_diff:.1e})"
        )
        if args.profile:
            print_profile(fast)
        if args.train:
            train = training_step_ratio(pair, args.repeats)
            # forward + backward is about 3x the forward's multiply-adds
            train["roofline_fraction"] = 3 * flops / train["ours"]["median"] / 1e9 / roofline
            results["pairs"][name]["train"] = train
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


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

    def step(module, call):
        def run():
            module.zero_grad(set_to_none=True)
            out = call()
            out = out.values() if isinstance(out, dict) else out
            sum(o.mean() for o in out).backward()

        return run

    pair.ours.train()
    pair.peer.train()
    steps = {"ours": step(pair.ours, pair.ours_call), "peer": step(pair.peer, pair.peer_call)}
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
