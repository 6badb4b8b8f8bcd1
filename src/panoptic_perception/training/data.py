"""Dataset samples -> augmented, batched training tensors for PanopticFPN."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from panoptic_perception.data.augment import AugmentConfig, Augmenter
from panoptic_perception.data.targets import targets_from_panoptic
from panoptic_perception.labels import LabelSpace


class TrainingSamples(torch.utils.data.Dataset):
    """Wraps a map-style dataset; each item is augmented to the network's input size.

    The augmentation rng is derived from (seed, epoch pass, index) so a resumed run sees the
    same stream as an uninterrupted one and DataLoader workers never share a stream.
    """

    def __init__(self, dataset, label_space: LabelSpace, augment: AugmentConfig, seed: int,
                 min_instance_area_px: int) -> None:
        self.dataset = dataset
        self.label_space = label_space
        self.augmenter = Augmenter(augment)
        self.seed = seed
        self.min_instance_area_px = min_instance_area_px

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        pass_index, index = key
        rng = np.random.default_rng([self.seed, pass_index, index])
        sample = self.augmenter(self.dataset[index], rng=rng)
        targets = targets_from_panoptic(sample["panoptic"], sample["segments"], self.label_space,
                                        min_area_px=self.min_instance_area_px)
        image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1).float()
        return image, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in targets.items()}


class PassSampler(torch.utils.data.Sampler):
    """Endless shuffled passes over the data, starting at a given batch (for resume).

    With num_shards > 1 (data-parallel processes) it yields shard `shard`'s equal slice of every
    global batch of `batch_size`, so the processes together see exactly the single-process stream.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_batch: int = 0, num_shards: int = 1,
                 shard: int = 0) -> None:
        if num_shards < 1 or not 0 <= shard < num_shards or batch_size % num_shards:
            raise ValueError(f"shard {shard} of {num_shards} cannot take an equal slice of batch {batch_size}")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.per_shard = batch_size // num_shards
        self.shard = shard

    def __iter__(self):
        batches_per_pass = max(1, self.size // self.batch_size)
        batch = self.start_batch
        while True:
            pass_index, offset = divmod(batch, batches_per_pass)
            order = np.random.default_rng([self.seed, pass_index]).permutation(self.size)
            if self.size < self.batch_size:  # tiny datasets (tests, overfitting): repeat
                order = np.resize(order, self.batch_size)
            chunk = order[offset * self.batch_size:(offset + 1) * self.batch_size]
            chunk = chunk[self.shard * self.per_shard:(self.shard + 1) * self.per_shard]
            yield [(pass_index, int(i)) for i in chunk]
            batch += 1


def collate(items: Sequence[Tuple[torch.Tensor, Dict[str, torch.Tensor]]]
            ) -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]]]:
    images = torch.stack([image for image, _ in items])
    return images, [targets for _, targets in items]
