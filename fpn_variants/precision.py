"""Mixed precision and the channels-last memory format, for training and evaluation, on the CPU
and on CUDA.

Detectron2's ``AMPTrainer`` runs float16 autocast and asserts CUDA. :class:`MixedPrecisionTrainer`
is that trainer for any device: the forward and the losses run under
``torch.autocast(device_type, precision)``, the backward and the optimizer step outside it; a
gradient scaler only for float16 (bfloat16 has float32's exponent range, so its gradients do not
underflow). On the CPU autocast supports bfloat16 (float16 autocast there is slow and refused).

Channels-last (:func:`use_channels_last`) stores the 4-d weights and each batch as NHWC; the
values are the same tensors, so a checkpoint loads either way.

Config keys (YAML): SOLVER.AMP.ENABLED, SOLVER.AMP.PRECISION, TEST.AMP.ENABLED,
MODEL.CHANNELS_LAST (:func:`fpn_variants.config.add_training_keys`). LazyConfig:
``train.amp.enabled``, ``train.amp.precision``, ``train.amp.eval_enabled``, ``train.channels_last``.
"""

import contextlib
import logging
import time
from typing import ContextManager, Dict, Optional, Tuple

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer
from torch import nn

__all__ = [
    "PRECISIONS",
    "MixedPrecisionTrainer",
    "build_step_trainer",
    "device_type",
    "evaluation_autocast",
    "resolve_precision",
    "use_channels_last",
]

logger = logging.getLogger(__name__)

# The values of SOLVER.AMP.PRECISION ("" is the device's default, see resolve_precision).
PRECISIONS: Dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def device_type(device: str) -> str:
    """ "cpu" or "cuda" (the type of a MODEL.DEVICE such as "cuda:1")."""
    return torch.device(device).type


def resolve_precision(
    precision: str, device: str, key: str = "SOLVER.AMP.PRECISION"
) -> torch.dtype:
    """The autocast dtype that ``precision`` names on ``device``.

    Args:
        precision (str): "float16", "bfloat16" or "" (the device's default: float16 on CUDA, as
            Detectron2's AMPTrainer, bfloat16 elsewhere).
        device (str): MODEL.DEVICE, e.g. "cpu", "cuda", "cuda:1".
        key (str): the setting's name, for the error messages.

    Raises:
        ValueError: an unknown name, or float16 on the CPU (CPU autocast runs bfloat16).
    """
    kind = device_type(device)
    if precision == "":
        return torch.float16 if kind == "cuda" else torch.bfloat16
    if precision not in PRECISIONS:
        raise ValueError(
            f"{key}={precision!r} is not one of ['', 'float16', 'bfloat16'] ('' is float16 on "
            "CUDA, bfloat16 on the CPU)"
        )
    if precision == "float16" and kind == "cpu":
        raise ValueError(
            f"{key}='float16' on the CPU (MODEL.DEVICE={device!r}): mixed precision on the CPU "
            f"runs bfloat16; set {key} to 'bfloat16' (or '', the device's default)"
        )
    return PRECISIONS[precision]


def evaluation_autocast(
    enabled: bool, precision: str, device: str, key: str = "SOLVER.AMP.PRECISION"
) -> ContextManager:
    """The context of an evaluation: ``torch.autocast`` at ``precision`` (as
    :func:`resolve_precision`, ``key`` naming it in errors) on ``device`` when ``enabled``
    (TEST.AMP.ENABLED), else none."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type(device), dtype=resolve_precision(precision, device, key))


class MixedPrecisionTrainer(AMPTrainer):
    """Detectron2's ``AMPTrainer`` on any device: each step's forward and losses under
    ``torch.autocast(device_type, precision)``; the gradients scaled (a ``GradScaler`` kept in the
    trainer's state, so in checkpoints) for float16 only."""

    def __init__(
        self,
        model: nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        *,
        precision: torch.dtype,
        device: str,
    ):
        """
        Args:
            model, data_loader, optimizer: as ``SimpleTrainer``.
            precision (torch.dtype): torch.float16 (CUDA only) or torch.bfloat16.
            device (str): where the model runs ("cpu", "cuda", "cuda:0", ...).
        """
        name = {v: k for k, v in PRECISIONS.items()}.get(precision)
        if name is None:
            raise ValueError(f"precision={precision} is not one of {list(PRECISIONS.values())}")
        resolve_precision(name, device, key="precision")  # float16 on the CPU: refused
        self.device_type = device_type(device)
        scaler = torch.amp.GradScaler(self.device_type, enabled=precision == torch.float16)
        super().__init__(model, data_loader, optimizer, grad_scaler=scaler, precision=precision)

    def run_step(self) -> None:
        """One step as ``AMPTrainer.run_step``, with the autocast of this trainer's device."""
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast(self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        if self.async_write_metrics:
            self.concurrent_executor.submit(
                self._write_metrics, loss_dict, data_time, iter=self.iter
            )
        else:
            self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def load_state_dict(self, state_dict: Dict) -> None:
        """As ``AMPTrainer``; a checkpoint without scaler state (a run without AMP, or in
        bfloat16, whose disabled scaler saves ``{}``) keeps the scaler's initial state."""
        if state_dict.get("grad_scaler"):
            super().load_state_dict(state_dict)
            return
        SimpleTrainer.load_state_dict(self, state_dict)
        logger.info("The checkpoint has no gradient scaler state (a run without float16 AMP).")


def build_step_trainer(
    model: nn.Module,
    data_loader,
    optimizer: torch.optim.Optimizer,
    *,
    amp: bool,
    precision: str,
    device: str,
    key: str = "SOLVER.AMP.PRECISION",
) -> SimpleTrainer:
    """``SimpleTrainer``, or :class:`MixedPrecisionTrainer` at ``precision`` (as
    :func:`resolve_precision`, ``key`` naming it in errors) when ``amp`` (SOLVER.AMP.ENABLED /
    ``train.amp.enabled``)."""
    if not amp:
        return SimpleTrainer(model, data_loader, optimizer)
    dtype = resolve_precision(precision, device, key)
    logger.info(f"Mixed precision training: autocast to {dtype} on {device_type(device)}.")
    return MixedPrecisionTrainer(model, data_loader, optimizer, precision=dtype, device=device)


def _channels_last_images(
    module: nn.Module, args: Tuple[torch.Tensor, ...]
) -> Optional[Tuple[torch.Tensor, ...]]:
    """Forward pre-hook: the batch (N, C, H, W) given to the backbone, as channels-last."""
    images = args[0]
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return (images.contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def use_channels_last(model: nn.Module) -> nn.Module:
    """Store ``model``'s 4-d parameters and buffers (the convolution weights) channels-last and
    give its ``backbone`` each batch channels-last (a forward pre-hook), in place; return it.

    The state dict holds the same values (only the strides differ), so checkpoints load into a
    model with or without it.

    Raises:
        TypeError: ``model`` has no ``backbone`` module (Detectron2's meta-architectures have).
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(
            f"MODEL.CHANNELS_LAST needs a model with a 'backbone' module (Detectron2's "
            f"meta-architectures have one); {type(model).__name__} has none: set "
            "MODEL.CHANNELS_LAST False"
        )
    model.to(memory_format=torch.channels_last)
    backbone.register_forward_pre_hook(_channels_last_images)
    return model
