"""``--resume`` after a crash ends with the weights and metrics of an uninterrupted run."""

import pytest
import torch
from detectron2.engine import HookBase

from fpn_variants.data.resumable import ResumableTrainingSampler
from fpn_variants.engine import Trainer

from .test_engine import _cfg, tiny_builtin_data  # noqa: F401  (a fixture)

ITERS, PERIOD = 5, 2  # checkpoints after iterations 1 and 3
CRASH = PERIOD  # the run dies in the iteration after the first checkpoint
# 64 px inputs: the test is about determinism, not accuracy.
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64"]
SMALL += ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]


class _Crash(Exception):
    pass


class _CrashAfter(HookBase):
    """Kills the training at the end of iteration ``CRASH`` (after the checkpoint hook)."""

    def after_step(self):
        if self.trainer.iter == CRASH:
            raise _Crash


def _train(
    output_dir, workers: int, *extra, crash=False, resume=False, evaluate=True, period=PERIOD
):
    """A run of ``ITERS`` iterations at 64 px with ``workers`` loader workers and the config
    options ``extra``."""
    opts = ["SOLVER.MAX_ITER", str(ITERS), "SOLVER.CHECKPOINT_PERIOD", str(period)]
    opts += ["DATALOADER.NUM_WORKERS", str(workers), *SMALL, *extra]
    _, cfg = _cfg(output_dir, *opts, *([] if evaluate else ["DATASETS.TEST", "()"]))
    trainer = Trainer(cfg)
    if crash:
        trainer.register_hooks([_CrashAfter()])
    trainer.resume_or_load(resume=resume)
    return trainer, trainer.train()


def _losses(trainer):
    return {i: v for v, i in trainer.storage.history("total_loss").values()}


@pytest.fixture(scope="module")
def uninterrupted(tiny_builtin_data, tmp_path_factory):  # noqa: F811
    trainer, results = _train(tmp_path_factory.mktemp("uninterrupted"), 0)
    return {"losses": _losses(trainer), "model": trainer.model.state_dict(), "results": results}


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_after_a_crash_ends_like_an_uninterrupted_run(uninterrupted, workers, tmp_path):
    """Crash after the first checkpoint, resume: every later step (data order, augmentation,
    sampling in the heads) is the uninterrupted run's, with or without a loader worker."""
    evaluate = workers == 0
    with pytest.raises(_Crash):
        _train(tmp_path, workers, crash=True, evaluate=evaluate)
    first = f"model_{PERIOD - 1:07d}.pth"
    assert (tmp_path / "last_checkpoint").read_text() == first
    saved = torch.load(tmp_path / first, weights_only=True)
    assert saved["trainer"]["seed"] == 42  # SEED of configs/Synthetic
    assert saved["__fpn_variants__"]["builder"] == "build_fpn_backbone"

    resumed, results = _train(tmp_path, workers, resume=True, evaluate=evaluate)
    assert resumed.start_iter == PERIOD and resumed.iter == ITERS
    losses = _losses(resumed)
    assert sorted(losses) == list(range(PERIOD, ITERS))
    for i, loss in losses.items():
        assert loss == pytest.approx(uninterrupted["losses"][i], rel=1e-6, abs=1e-6), i
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    reference = uninterrupted["model"]
    assert final.keys() == reference.keys()
    for k, v in final.items():
        assert (v.double() - reference[k].double()).abs().max().item() <= 1e-6, k
    if evaluate:
        assert results == uninterrupted["results"]


def test_a_run_killed_while_saving_model_final_writes_it_when_resumed(
    tiny_builtin_data, tmp_path  # noqa: F811
):
    """SIGKILL while model_final.pth is written (after the last periodic checkpoint, of the same
    iteration) leaves that checkpoint in last_checkpoint and a hidden temporary file. --resume
    has no iteration left to run: it writes model_final.pth (the README's --eval-only command
    and tools/package_model.py read it) and removes the temporary file."""
    _train(tmp_path, 0, evaluate=False, period=ITERS)
    last = f"model_{ITERS - 1:07d}.pth"
    final = tmp_path / "model_final.pth"
    partial = tmp_path / ".model_final.pth.tmp-0badc0de"
    partial.write_bytes(final.read_bytes()[:1000])
    final.unlink()
    (tmp_path / "last_checkpoint").write_text(last)

    resumed, _ = _train(tmp_path, 0, resume=True, evaluate=False, period=ITERS)
    assert resumed.start_iter == ITERS
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    written = torch.load(final, weights_only=True)
    expected = torch.load(tmp_path / last, weights_only=True)
    assert written["iteration"] == expected["iteration"] == ITERS - 1
    assert written["model"].keys() == expected["model"].keys()
    for k, v in expected["model"].items():
        assert torch.equal(written["model"][k], v), k
    assert not partial.exists()


def test_sampler_restarts_at_any_batch_with_aspect_ratio_groups():
    """Batches are single-orientation and batch ``k`` is the same from the start or resumed."""
    buckets = [0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 0]

    def batches(start_batch, count, rank=0, world_size=1):
        sampler = ResumableTrainingSampler(
            len(buckets), 3, seed=7, buckets=buckets, rank=rank, world_size=world_size
        )
        sampler.start_batch = start_batch
        items, stream = [], iter(sampler)
        for _ in range(count * 3):
            items.append(next(stream))
        return [items[i : i + 3] for i in range(0, len(items), 3)]

    full = batches(0, 12)
    for batch in full:
        assert len({buckets[index] for _, index in batch}) == 1
    assert batches(5, 7) == full[5:]
    # The per-sample seeds differ within and across ranks.
    seeds = [s for batch in full for s, _ in batch]
    other_rank = [s for batch in batches(0, 12, rank=1, world_size=2) for s, _ in batch]
    assert len(set(seeds)) == len(seeds) and not set(seeds) & set(other_rank)
    # Each epoch of rank 0's part of the stream is a permutation drawn from the seed.
    plain = ResumableTrainingSampler(len(buckets), 1, seed=7)
    stream = iter(plain)
    epoch = sorted(next(stream)[1] for _ in range(len(buckets)))
    assert epoch == list(range(len(buckets)))
