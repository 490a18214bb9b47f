"""Cost measurements: parameters, FLOPs, CPU latency, the conv roofline of this machine.

FLOPs follow fvcore's convention (one fused multiply-add counts as one flop, as Detectron2's
``FlopCountAnalysis`` and its model zoo report them); only ops fvcore knows are counted (convs,
matmuls, upsampling, pooling are among them; element-wise ops are not).
"""

import statistics
import time
from typing import Callable, Dict, List, Tuple, Union

import torch
from fvcore.nn import FlopCountAnalysis
from torch import Tensor, nn

__all__ = [
    "count_flops",
    "count_neck_flops",
    "flop_analysis",
    "count_parameters",
    "interleaved_latency",
    "latency_stats",
    "neck_flop_analysis",
    "roofline_conv",
    "synchronized",
]


def count_parameters(module: nn.Module, exclude_prefix: str = "") -> int:
    """Number of parameters, leaving out those whose name starts with ``exclude_prefix``."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if not (exclude_prefix and name.startswith(exclude_prefix))
    )


def flop_analysis(module: nn.Module, inputs, analysis_class=FlopCountAnalysis):
    """fvcore's analysis of ``module(*inputs)`` (``.total()``, ``.by_module()``, ...), silent about
    unsupported ops and uncalled modules.

    ``analysis_class``: fvcore's ``FlopCountAnalysis`` or a subclass, e.g. Detectron2's for a
    detector called on its list of input dicts.
    """
    analysis = analysis_class(module, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def count_flops(module: nn.Module, inputs, analysis_class=FlopCountAnalysis) -> int:
    """fvcore FLOPs (multiply-adds) of ``module(*inputs)`` (see :func:`flop_analysis`)."""
    return int(flop_analysis(module, inputs, analysis_class).total())


def neck_flop_analysis(neck: nn.Module, bottom_up_features: Dict[str, torch.Tensor]):
    """fvcore's analysis of a :class:`~fpn_variants.necks.PyramidNeck` alone on given features;
    its module names are the neck's, prefixed by ``neck.``."""
    return flop_analysis(_NeckOnly(neck), (bottom_up_features,))


def count_neck_flops(neck: nn.Module, bottom_up_features: Dict[str, torch.Tensor]) -> int:
    """fvcore FLOPs of a :class:`~fpn_variants.necks.PyramidNeck` alone on given features."""
    return int(neck_flop_analysis(neck, bottom_up_features).total())


class _NeckOnly(nn.Module):
    def __init__(self, neck: nn.Module):
        super().__init__()
        self.neck = neck

    def forward(self, bottom_up_features: Dict[str, torch.Tensor]):
        return self.neck.forward_neck(bottom_up_features)


def latency_stats(times: List[float]) -> Dict[str, float]:
    """Median and min (seconds) of repeated timings."""
    return {"median": statistics.median(times), "min": min(times), "repeats": len(times)}


def interleaved_latency(
    runs: Dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2
) -> Dict[str, Dict[str, float]]:
    """Time several callables in turns (A B C A B C ...), so that load on a noisy machine falls on
    all of them alike (grad mode is the caller's). Returns {name: latency_stats}."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: latency_stats(t) for name, t in times.items()}


def synchronized(
    fn: Callable[[], object], device: Union[str, torch.device]
) -> Callable[[], object]:
    """``fn`` followed by a wait for the device's queued kernels (CUDA), so a timer around it
    measures the work and not its launch."""
    device = torch.device(device)
    if device.type != "cuda":
        return fn

    def call():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return call


def roofline_conv(channels: int = 256, size: int = 100) -> Tuple[Callable[[], Tensor], int]:
    """A large 3x3 convolution (``channels`` -> ``channels`` at ``size`` x ``size``, eval, in
    the faster channels-last format) as a function of no arguments, and its fvcore FLOPs. Timed
    in turns with a model (:func:`interleaved_latency`, under ``torch.no_grad()``), its GFLOP/s
    is this machine's practical ceiling for that model's convolutions."""
    conv = nn.Conv2d(channels, channels, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, channels, size, size).contiguous(memory_format=torch.channels_last)
    return (lambda: conv(x)), channels * channels * 9 * size * size
