"""Mixed precision and channels-last (fpn_variants.precision): the keys and their checks; the
trainer's autocast (bfloat16 on the CPU, no gradient scaler); what must stay float32 under
autocast (RoIAlign, BiFPN's fusion weights, NAS-FPN's attention, norms' statistics, losses,
anchors and decoded boxes); every detector x neck trains and infers with both; checkpoints load
across memory formats; an AMP + channels-last run resumes exactly."""

import shutil

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch import nn

import fpn_variants
from fpn_variants.checkpoint import Checkpointer
from fpn_variants.config import check_config
from fpn_variants.engine import Trainer
from fpn_variants.layers.fusion import build_fusion
from fpn_variants.optimize import optimize_for_inference
from fpn_variants.precision import (
    MixedPrecisionTrainer,
    build_step_trainer,
    evaluation_autocast,
    resolve_precision,
    use_channels_last,
)
from fpn_variants.registry import NECK_REGISTRY
from fpn_variants.roi_align import ROIAlign

from .test_detectors import COMBOS, combo_id, model_cfg, sample
from .test_engine import _cfg, tiny_builtin_data  # noqa: F401  (a fixture)
from .test_necks import _bn_neck_with_statistics
from .test_resume import ITERS, PERIOD, _losses, _train

BF16 = torch.bfloat16
PAPER_BUILDERS = [row.builder for row in NECK_REGISTRY if row.paper]
# Relative rounding error of bfloat16 (8 significant bits).
BF16_EPS = 2.0**-8


def within_bf16_rounding(value: torch.Tensor, reference: torch.Tensor) -> bool:
    """``value`` is ``reference`` (float32) rounded once to bfloat16, or closer."""
    return bool(((value.float() - reference).abs() <= reference.abs() * BF16_EPS + 1e-30).all())


def channels_innermost(x: torch.Tensor) -> bool:
    """(N, C, H, W) ``x`` is laid out NHWC (channels adjacent in memory; maybe a strided view
    such as a kernel-1 max-pool's), or has one channel or pixel, where layouts coincide."""
    return x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1 or x.stride(1) == 1


# ---------------------------------------------------------------------------------------------
# Keys and checks.
def test_default_precision_is_float16_on_cuda_and_bfloat16_on_the_cpu():
    assert resolve_precision("", "cuda:1") is torch.float16
    assert resolve_precision("", "cpu") is BF16
    assert resolve_precision("bfloat16", "cuda") is BF16
    assert resolve_precision("float16", "cuda") is torch.float16


@pytest.mark.parametrize("amp_key", ["SOLVER.AMP.ENABLED", "TEST.AMP.ENABLED"])
def test_float16_on_the_cpu_is_refused_saying_what_to_set(amp_key):
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "SOLVER.AMP.PRECISION", "float16", amp_key, True])
    with pytest.raises(ValueError, match="set SOLVER.AMP.PRECISION to 'bfloat16'"):
        check_config(cfg)
    cfg.SOLVER.AMP.PRECISION = "half"
    with pytest.raises(ValueError, match=r"SOLVER.AMP.PRECISION='half' is not one of"):
        check_config(cfg)
    cfg.SOLVER.AMP.PRECISION = "bfloat16"
    check_config(cfg)


def test_channels_last_must_be_a_bool():
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.MODEL.CHANNELS_LAST = "yes"
    with pytest.raises(TypeError, match="MODEL.CHANNELS_LAST='yes' must be"):
        check_config(cfg)


# ---------------------------------------------------------------------------------------------
# The trainer.
class _AutocastProbe(nn.Module):
    """A linear regression whose forward records the autocast state it runs in, and whose
    backward records it too (through a hook on the output)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.seen = []

    def forward(self, batch):
        self.seen.append(
            ("forward", torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        )
        out = self.linear(batch[0])
        out.register_hook(
            lambda g: self.seen.append(("backward", torch.is_autocast_enabled("cpu")))
        )
        return {"loss": F.mse_loss(out.float(), batch[1])}


def _regression_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    while True:
        yield x, y


def test_cpu_amp_step_runs_the_forward_in_bfloat16_and_learns():
    torch.manual_seed(0)
    model = _AutocastProbe()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = build_step_trainer(
        model, _regression_data(), optimizer, amp=True, precision="", device="cpu"
    )
    assert isinstance(trainer, MixedPrecisionTrainer) and not trainer.grad_scaler.is_enabled()
    with EventStorage() as storage:
        trainer.storage = storage
        for trainer.iter in range(30):
            trainer.run_step()
    assert model.seen[0] == ("forward", True, BF16)
    assert ("backward", False) in model.seen  # backward and step outside autocast
    assert model.linear.weight.dtype == torch.float32  # float32 master weights
    losses = [v for v, _ in storage.history("total_loss").values()]
    assert losses[-1] < 0.1 * losses[0], losses
    # A run without AMP wrote no scaler state; its checkpoint loads.
    state = build_step_trainer(
        model, _regression_data(), optimizer, amp=False, precision="", device="cpu"
    ).state_dict()
    trainer.load_state_dict(state)


def test_float16_trainer_on_the_cpu_is_refused():
    model = _AutocastProbe()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="'bfloat16'"):
        MixedPrecisionTrainer(model, [], optimizer, precision=torch.float16, device="cpu")
    # LazyConfig's key in the message (tools/lazyconfig_train_net.py)
    with pytest.raises(ValueError, match="set train.amp.precision to 'bfloat16'"):
        build_step_trainer(
            model,
            [],
            optimizer,
            amp=True,
            precision="float16",
            device="cpu",
            key="train.amp.precision",
        )


def test_evaluation_autocast_only_when_enabled():
    with evaluation_autocast(False, "", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with evaluation_autocast(True, "", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == BF16


# ---------------------------------------------------------------------------------------------
# Numerics that stay float32 under autocast.
@pytest.mark.parametrize("training", [True, False], ids=["matrix-path", "torchvision"])
def test_roi_align_under_autocast_samples_in_float32(training):
    """Output = float32 RoIAlign of the (bfloat16) features at the exact boxes, rounded once to
    bfloat16 (Detectron2 would round the boxes to bfloat16: 2 px steps at 300-500 px)."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 16, 64, 80, generator=gen).to(BF16).requires_grad_(training)
    rois = torch.tensor([[0, 100.3, 50.7, 301.3, 250.9], [1, 401.3, 3.3, 470.6, 90.1]])
    rois = torch.cat([rois, rois + torch.tensor([0, 3.1, 1.7, 3.1, 1.7])])
    op = ROIAlign((7, 7), 1 / 8, 2, True)
    with torch.autocast("cpu", dtype=BF16):
        out = op(features, rois)
    reference_input = features.detach().float().requires_grad_(training)
    reference = op(reference_input, rois)
    assert out.dtype == BF16
    assert within_bf16_rounding(out, reference)
    if training:
        grad = torch.randn(out.shape, generator=gen)
        out.backward(grad.to(BF16))
        reference.backward(grad.to(BF16).float())
        assert features.grad.dtype == BF16 and torch.isfinite(features.grad).all()
        assert within_bf16_rounding(features.grad, reference_input.grad)


def test_roi_align_gradient_keeps_a_channels_last_input_layout():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 16, 32, 40, generator=gen)
    rois = torch.tensor([[0, 10.3, 5.7, 200.3, 150.9], [1, 40.3, 3.3, 270.6, 90.1]])
    op = ROIAlign((7, 7), 1 / 8, 0, True)
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        # A feature map inside the model (not a leaf, whose .grad autograd would re-layout).
        x = features.clone(memory_format=memory_format).requires_grad_() * 1.0
        x.register_hook(grads.append)
        op(x, rois).pow(2).sum().backward()
        assert grads[-1].is_contiguous(memory_format=memory_format)
    assert torch.allclose(*grads, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["fast_normalized", "softmax", "global_attention"])
def test_fusion_weights_and_attention_are_float32_under_autocast(method):
    gen = torch.Generator().manual_seed(0)
    fusion = build_fusion(method, 2, gate_index=0, pool="avg")
    if method != "global_attention":
        with torch.no_grad():
            fusion.edge_weights.copy_(torch.tensor([0.3, 1.7]))
    xs = [torch.randn(2, 64, 9, 11, generator=gen).to(BF16) for _ in range(2)]
    with torch.autocast("cpu", dtype=BF16):
        out = fusion(xs)
        if method != "global_attention":
            assert fusion.normalized_weights().dtype == torch.float32
    assert out.dtype == BF16
    a, b = (x.float() for x in xs)
    if method == "global_attention":  # the gate from float32 pooling, then in the features' dtype
        gate = torch.sigmoid(a.mean(dim=(2, 3), keepdim=True)).to(BF16)
        assert torch.equal(out, xs[0] + xs[1] * gate)
    else:
        # Two bfloat16 roundings (product, then fused multiply-add) of float32-weighted terms.
        w = fusion.normalized_weights().detach()
        error = (out.float() - (w[0] * a + w[1] * b)).abs()
        assert (error <= 2 * BF16_EPS * (w[0] * a.abs() + w[1] * b.abs())).all()


@pytest.mark.parametrize("norm", ["BN", "GN"])
def test_norm_statistics_are_float32_under_autocast(norm):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 64, 8, 8, generator=gen) * 3 + 1).to(BF16)
    layer = nn.BatchNorm2d(64) if norm == "BN" else nn.GroupNorm(32, 64)
    reference = nn.BatchNorm2d(64) if norm == "BN" else nn.GroupNorm(32, 64)
    with torch.autocast("cpu", dtype=BF16):
        out = layer(x)
    expected = reference(x.float())
    assert within_bf16_rounding(out, expected) or torch.allclose(
        out.float(), expected, rtol=2 * BF16_EPS, atol=1e-6
    )
    if norm == "BN":
        assert layer.running_mean.dtype == layer.running_var.dtype == torch.float32
        assert torch.allclose(layer.running_mean, reference.running_mean, rtol=1e-6, atol=1e-7)
        assert torch.allclose(layer.running_var, reference.running_var, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Every detector x neck: training steps and inference under bfloat16 autocast, channels-last.
@pytest.mark.parametrize("detector,neck", COMBOS, ids=[combo_id(c) for c in COMBOS])
def test_every_detector_and_neck_trains_and_infers_in_bf16_channels_last(detector, neck):
    torch.manual_seed(0)
    model = use_channels_last(build_model(model_cfg(detector, neck)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = [sample(64, 96, seed=seed) for seed in range(2)]
    model.train()
    for _ in range(2):
        with EventStorage(), torch.autocast("cpu", dtype=BF16):
            losses = model(batch)
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        for name, param in model.named_parameters():
            if param.requires_grad:
                assert param.dtype == torch.float32, name
                assert param.grad is not None and torch.isfinite(param.grad).all(), name
                if param.dim() == 4:
                    assert param.is_contiguous(memory_format=torch.channels_last), name
        optimizer.step()

    model.eval()
    features = {}
    model.backbone.register_forward_hook(lambda m, args, out: features.update(out))
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        output = model([sample(64, 96, seed=2, with_targets=False)])[0]["instances"]
    assert len(output) > 0
    assert output.pred_boxes.tensor.dtype == torch.float32  # decoded in float32
    assert torch.isfinite(output.pred_boxes.tensor).all() and torch.isfinite(output.scores).all()
    for name, feature in features.items():  # the neck keeps the memory format
        assert channels_innermost(feature), name
    anchor_generator = getattr(model, "anchor_generator", None) or getattr(
        model.proposal_generator, "anchor_generator"
    )
    with torch.autocast("cpu", dtype=BF16):
        anchors = anchor_generator([f for f in features.values()][: anchor_generator.num_features])
    assert all(a.tensor.dtype == torch.float32 for a in anchors)


@pytest.mark.parametrize("detector", ["retinanet", "faster_rcnn"])
def test_channels_last_computes_the_same_training_step(detector):
    """In float32, channels-last changes only the order of the sums: the same losses and
    gradients as NCHW, to float32 rounding. (The R-CNN's RoI losses and all its gradients depend
    on the top-k / NMS choice of proposals, which a rounding difference can flip on near-ties:
    for it, only the RPN losses are compared.)"""
    steps = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = build_model(model_cfg(detector, "FPN")).train()
        if channels_last:
            use_channels_last(model)
        torch.manual_seed(1)  # the same anchor samples in both
        with EventStorage():
            losses = model([sample(96, 128, seed=seed) for seed in range(2)])
        sum(losses.values()).backward()
        steps.append((losses, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (losses, grads), (cl_losses, cl_grads) = steps
    if detector == "faster_rcnn":
        losses = {k: v for k, v in losses.items() if k.startswith("loss_rpn")}
        grads = {}
    for name, loss in losses.items():
        assert torch.allclose(cl_losses[name], loss, rtol=1e-5, atol=1e-7), name
    for name, grad in grads.items():
        scale = grad.abs().max().item()
        assert (cl_grads[name] - grad).abs().max().item() <= 1e-4 * scale + 1e-8, name


# ---------------------------------------------------------------------------------------------
# Checkpoints across memory formats; the engine with both switches.
@pytest.mark.parametrize("saved_channels_last", [True, False])
def test_checkpoints_load_across_memory_formats(saved_channels_last, tmp_path):
    cfg = model_cfg("faster_rcnn", "FPN")
    torch.manual_seed(0)
    saved = build_model(cfg)
    if saved_channels_last:
        use_channels_last(saved)
    Checkpointer(saved, str(tmp_path)).save("model")
    torch.manual_seed(1)
    loaded = build_model(cfg)
    if not saved_channels_last:
        use_channels_last(loaded)
    Checkpointer(loaded).load(str(tmp_path / "model.pth"))
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    image = [sample(96, 128, seed=3, with_targets=False)]
    with torch.no_grad():
        first, second = (m.eval()(image)[0]["instances"] for m in (saved, loaded))
    assert torch.allclose(first.scores, second.scores, rtol=1e-4, atol=1e-5)


def test_an_amp_channels_last_run_resumes_exactly(tiny_builtin_data, tmp_path):  # noqa: F811
    fast = ["SOLVER.AMP.ENABLED", "True", "MODEL.CHANNELS_LAST", "True", "TEST.AMP.ENABLED", "True"]
    reference, _ = _train(tmp_path / "uninterrupted", 0, *fast, evaluate=False)
    assert isinstance(reference._trainer, MixedPrecisionTrainer)
    # The folder as a run killed after its first checkpoint would have left it.
    shutil.copytree(tmp_path / "uninterrupted", tmp_path / "resumed")
    for later in (f"model_{PERIOD * 2 - 1:07d}.pth", "model_final.pth"):
        (tmp_path / "resumed" / later).unlink()
    (tmp_path / "resumed" / "last_checkpoint").write_text(f"model_{PERIOD - 1:07d}.pth")
    resumed, results = _train(tmp_path / "resumed", 0, *fast, resume=True)
    assert resumed.start_iter == PERIOD and resumed.iter == ITERS
    assert _losses(resumed) == {i: v for i, v in _losses(reference).items() if i >= PERIOD}
    for (name, a), b in zip(
        reference.model.state_dict().items(), resumed.model.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert set(results) == {"bbox"}  # evaluated under autocast


def test_trainer_builds_channels_last_models(tiny_builtin_data, tmp_path):  # noqa: F811
    _, cfg = _cfg(tmp_path, "MODEL.CHANNELS_LAST", "True")
    model = Trainer.build_model(cfg)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


# ---------------------------------------------------------------------------------------------
# Inference in bfloat16.
@pytest.mark.parametrize("neck", PAPER_BUILDERS)
def test_bf16_optimized_model_is_close_to_the_plain_one(neck):
    """optimize_for_inference(dtype=bfloat16): BN folded, NHWC, forward under bf16 autocast;
    outputs (bfloat16) within bfloat16 rounding accumulated over the ResNet-18 and the neck:
    measured 0.8-3.7% relative (L2) error per level over the four necks and a few seeds."""
    torch.manual_seed(0)
    model = _bn_neck_with_statistics(neck)
    x = torch.rand(1, 3, 96, 64)
    fast = optimize_for_inference(model, dtype=BF16)
    with torch.no_grad():
        plain, optimized = model(x), fast(x)
    assert list(optimized) == list(plain)
    for name in plain:
        assert optimized[name].dtype == BF16, name  # ran in bfloat16
        error = (optimized[name].float() - plain[name]).norm() / plain[name].norm()
        assert error < 0.06, (name, error.item())
    assert not torch.is_autocast_enabled("cpu")  # only during the call
    with pytest.raises(ValueError, match="dtype=torch.float16 is not one of"):
        optimize_for_inference(model, dtype=torch.float16)
