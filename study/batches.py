"""Batches resident on the training device: uint8 images with augmentation and normalisation as batched tensor ops,
or, in a frozen-backbone study, precomputed feature vectors.

No DataLoader workers: the whole split lives on the device once, and a batch is an index, two gathers (random
crop) and a where (flip). This keeps concurrent trials on one GPU from fighting over CPU workers.
"""
import warnings

import torch

PAD = 4  # pixels of zero padding before the random crop back to the image's own size


def batch_count(examples: int, batch_size: int) -> int:
    full, rest = divmod(examples, batch_size)
    return full + (rest > 1)  # a last batch of one example would break batch norm: drop it


class DeviceBatches:
    """uint8 images [N, C, H, W], normalised per channel with the data's own statistics (`channel_mean`,
    `channel_std`: C values each, on a 0..1 scale; study/sources/)."""

    def __init__(self, images, labels, device: torch.device, channel_mean, channel_std, channels_last: bool = False):
        self.device = device
        with warnings.catch_warnings():  # read-only arrays (Ray's object store) are fine: we never write to them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.images = torch.as_tensor(images).to(device)  # uint8 [N, 3, H, W]
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean = torch.tensor(channel_mean, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(channel_std, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255

    def __len__(self):
        return len(self.labels)

    def num_batches(self, batch_size: int) -> int:
        return batch_count(len(self), batch_size)

    def normalise(self, images_uint8):
        x = (images_uint8.float() - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def random_crop_flip(self, x, generator: torch.Generator):
        """Per-image random translation within PAD pixels (zero fill) and horizontal flip, on uint8."""
        b, c, h, w = x.shape
        shifts = torch.randint(0, 2 * PAD + 1, (2, b), generator=generator).to(self.device)
        flips = (torch.rand(b, generator=generator) < 0.5).to(self.device)
        padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
        rows = (shifts[0][:, None] + torch.arange(h, device=self.device))[:, None, :, None]
        x = padded.gather(2, rows.expand(b, c, h, w + 2 * PAD))
        cols = (shifts[1][:, None] + torch.arange(w, device=self.device))[:, None, None, :]
        x = x.gather(3, cols.expand(b, c, h, w))
        return torch.where(flips[:, None, None, None], x.flip(3), x)

    def train_batches(self, batch_size: int, generator: torch.Generator, augment: bool = True):
        """One shuffled epoch of (normalised images, labels)."""
        order = torch.randperm(len(self), generator=generator).to(self.device)
        for i in range(self.num_batches(batch_size)):
            index = order[i * batch_size: (i + 1) * batch_size]
            images = self.images[index]
            if augment:
                images = self.random_crop_flip(images, generator)
            yield self.normalise(images), self.labels[index]

    def eval_batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield self.normalise(self.images[start: start + batch_size]), self.labels[start: start + batch_size]


class FeatureBatches:
    """Feature vectors [N, d] of a frozen backbone (study/frozen.py), already standardised; shuffled each epoch.

    There is no augmentation: the features are of fixed, unaugmented images."""

    def __init__(self, features, labels, device: torch.device):
        self.device = device
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.features = torch.as_tensor(features, dtype=torch.float32).to(device)
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(device)

    def __len__(self):
        return len(self.labels)

    def num_batches(self, batch_size: int) -> int:
        return batch_count(len(self), batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator, augment: bool = True):
        # One gather of the whole split per epoch, then each batch a slice of it: the same batches as a gather per
        # batch, without 2 index calls a step (with the fused optimiser, the epoch outside the head's own step
        # took 0.73-0.95 of its time before: BENCHMARKS.md, "A frozen epoch's per-step overhead").
        order = torch.randperm(len(self), generator=generator).to(self.device)
        features, labels = self.features[order], self.labels[order]
        for i in range(self.num_batches(batch_size)):
            yield features[i * batch_size: (i + 1) * batch_size], labels[i * batch_size: (i + 1) * batch_size]

    def eval_batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield self.features[start: start + batch_size], self.labels[start: start + batch_size]
