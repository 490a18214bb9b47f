"""A training data loader whose stream can be restarted at any iteration, exactly.

Detectron2's training loader cannot be resumed exactly: its ``TrainingSampler`` starts its
infinite stream from the beginning again, ``AspectRatioGroupedDataset`` keeps images waiting in
its buckets across batches, and the random augmentations draw from the global RNGs of whichever
loader worker maps the image. Here:

* :class:`ResumableTrainingSampler` groups the images by aspect ratio itself (so batch ``i`` is
  always items ``i * batch_size ... (i + 1) * batch_size - 1`` of the stream) and skips the first
  ``start_batch`` batches;
* :class:`SeededMapDataset` maps every image with the Python, NumPy and torch RNGs seeded from
  the run's seed, the rank and the image's position in the stream, and restores them after.

The images, their order, their augmentations and the batches are then a function of (seed,
position) only: the same with 0 or N workers, from the start or after a resume.
"""

import contextlib
import itertools
import logging
import random
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetMapper,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.build import build_batch_data_loader
from detectron2.data.common import DatasetFromList, ToIterableDataset
from detectron2.utils import comm
from torch.utils.data import Dataset, Sampler

__all__ = [
    "ResumableTrainingSampler",
    "SeededMapDataset",
    "build_resumable_train_loader",
    "derive_seed",
    "find_resumable_sampler",
    "resolve_seed",
    "seeded_rng",
]

logger = logging.getLogger(__name__)

# Streams of derived seeds, kept apart so that sample k and iteration k get different seeds.
SAMPLE_STREAM, ITERATION_STREAM = 0, 1


def derive_seed(seed: int, stream: int, rank: int, position: int) -> int:
    """A 32-bit seed for one sample or iteration, independent of every other (NumPy
    ``SeedSequence`` of the run's seed, the stream, the rank and the position)."""
    return int(np.random.SeedSequence([seed, stream, rank, position]).generate_state(1)[0])


def resolve_seed(cfg: CfgNode) -> int:
    """``cfg.SEED`` if set (>= 0), else a random seed shared by all processes."""
    return int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's CPU global RNGs with ``seed`` inside the block, and
    give them back their previous states after it."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class ResumableTrainingSampler(Sampler):
    """Infinite stream of ``(sample_seed, index)`` for :class:`SeededMapDataset`, in batches.

    The indices are Detectron2's ``TrainingSampler`` stream (a new permutation of ``range(size)``
    per epoch, drawn from ``seed``), sharded by rank. With ``buckets``, indices are grouped into
    batches whose images all have the same bucket (Detectron2's aspect-ratio grouping: 0 for
    landscape, 1 for portrait), in the order batches fill up. Set :attr:`start_batch` to skip
    batches already trained on; :attr:`seed` may be changed too, before iterating.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        buckets: Optional[Sequence[int]] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        """
        Args:
            size (int): number of images in the dataset; > 0.
            batch_size (int): images per batch of this process; > 0.
            seed (int): seed of the permutations and of the per-sample seeds; >= 0.
            shuffle (bool): permute each epoch (else 0, 1, ..., size - 1 repeatedly).
            buckets (list[int] or None): aspect-ratio bucket (0 or 1) of every image; None: no
                grouping.
            rank, world_size (int or None): this process and the number of processes; default:
                from ``detectron2.utils.comm``.
        """
        if size <= 0 or batch_size <= 0:
            raise ValueError(f"size={size} and batch_size={batch_size} must be positive")
        if buckets is not None and len(buckets) != size:
            raise ValueError(f"{len(buckets)} buckets given for {size} images")
        self.size = size
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.buckets = None if buckets is None else list(buckets)
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self.start_batch = 0

    def _all_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=g).tolist()
            else:
                yield from range(self.size)

    def _grouped(self, indices: Iterator[int]) -> Iterator[int]:
        waiting: List[List[int]] = [[], []]
        for index in indices:
            bucket = waiting[self.buckets[index]]
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield from bucket
                bucket.clear()

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        indices = itertools.islice(self._all_indices(), self.rank, None, self.world_size)
        if self.buckets is not None:
            indices = self._grouped(indices)
        start = self.start_batch * self.batch_size
        for position, index in itertools.islice(enumerate(indices), start, None):
            yield derive_seed(self.seed, SAMPLE_STREAM, self.rank, position), index


class SeededMapDataset(Dataset):
    """``dataset[index]`` mapped by ``mapper`` with seeded RNGs: item ``(sample_seed, index)``.

    Like Detectron2's ``MapDataset``, a sample the mapper returns None for is replaced by another,
    drawn from ``sample_seed``.
    """

    def __init__(self, dataset: Sequence[Dict], mapper: Callable[[Dict], Optional[Dict]]):
        self._dataset = dataset
        self._mapper = mapper

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, item: Tuple[int, int]) -> Dict:
        sample_seed, index = item
        for attempt in itertools.count(1):
            with seeded_rng(sample_seed):
                data = self._mapper(self._dataset[index])
            if data is not None:
                return data
            if attempt % 3 == 0:
                logger.warning(f"The mapper returned None for {attempt} samples in a row.")
            rng = random.Random(sample_seed)
            index, sample_seed = rng.randrange(len(self._dataset)), rng.getrandbits(32)


def _train_dataset_dicts(cfg: CfgNode) -> List[Dict]:
    """The DATASETS.TRAIN dicts, as Detectron2's training loader filters them."""
    try:
        return get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=(
                cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
            ),
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
    except AssertionError as e:  # Detectron2 asserts that datasets are not empty
        raise ValueError(
            f"DATASETS.TRAIN={tuple(cfg.DATASETS.TRAIN)} gives no training images ({e}). Images "
            "without annotations (or with crowd annotations only) are removed when "
            "DATALOADER.FILTER_EMPTY_ANNOTATIONS is True: check the annotation files."
        ) from e


def build_resumable_train_loader(cfg: CfgNode, mapper: Optional[Callable] = None):
    """Detectron2's training loader for ``cfg``, made of :class:`ResumableTrainingSampler` and
    :class:`SeededMapDataset`. Other samplers than DATALOADER.SAMPLER_TRAIN "TrainingSampler"
    give Detectron2's own loader (training works, resuming is not exact).

    Args:
        cfg (CfgNode): DATASETS.TRAIN, DATALOADER.*, SOLVER.IMS_PER_BATCH and SEED are read.
        mapper (callable or None): default ``DatasetMapper(cfg, is_train=True)``.

    Returns:
        iterable of lists of mapped dicts (one batch of this process each).
    """
    mapper = DatasetMapper(cfg, is_train=True) if mapper is None else mapper
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        logger.warning(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN!r}: --resume continues "
            "training but with another data order than an uninterrupted run (exact with "
            "'TrainingSampler' only)."
        )
        return build_detection_train_loader(cfg, mapper=mapper)
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} must be a multiple of the number "
            f"of processes ({world_size})"
        )
    dicts = _train_dataset_dicts(cfg)
    buckets = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        buckets = [0 if d["width"] > d["height"] else 1 for d in dicts]
    seed = resolve_seed(cfg)
    sampler = ResumableTrainingSampler(
        len(dicts), cfg.SOLVER.IMS_PER_BATCH // world_size, seed=seed, buckets=buckets
    )
    dataset = SeededMapDataset(DatasetFromList(dicts, copy=False), mapper)
    # The loader's own generator (not the global torch RNG) seeds its workers.
    return build_batch_data_loader(
        dataset,
        sampler,
        cfg.SOLVER.IMS_PER_BATCH,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        seed=seed,
    )


def find_resumable_sampler(data_loader) -> Optional[ResumableTrainingSampler]:
    """The :class:`ResumableTrainingSampler` of a loader made by
    :func:`build_resumable_train_loader`, else None."""
    dataset = getattr(data_loader, "dataset", None)
    sampler = getattr(dataset, "sampler", None) if isinstance(dataset, ToIterableDataset) else None
    return sampler if isinstance(sampler, ResumableTrainingSampler) else None
