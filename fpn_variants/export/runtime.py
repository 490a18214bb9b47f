"""Running an exported ONNX file with onnxruntime."""

from typing import Callable, List

import numpy as np
import torch
from torch import Tensor

__all__ = ["onnx_runner"]


def onnx_runner(path: str) -> Callable[..., List[Tensor]]:
    """An onnxruntime (CPU) session of the ONNX file ``path``, as a function: input tensors ->
    list of output tensors."""
    # Imported here: onnxruntime is an optional (dev) dependency, needed for ONNX files only.
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: shape-merge warnings of dynamic graphs are noise
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: Tensor) -> List[Tensor]:
        feeds = {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)}
        return [torch.from_numpy(np.asarray(y)) for y in session.run(None, feeds)]

    return run
