"""Preloaded in-memory datasets: every split's preprocessed items loaded once, for many short fits.

The comparison of methods and the tuning trials train and score many small models on the same
subjects; holding the preprocessed items in memory spares them the loader and the cache reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from uda3d.config import PreprocessConfig
from uda3d.data.layout import discover
from uda3d.errors import DataError

SPLITS = ("domain1_train", "domain1_val", "domain1_test", "domain2_train", "domain2_val", "domain2_test")


@dataclass
class Data:
    """Every split's preprocessed items, loaded once and held in memory (short fits reuse them).

    ``items[split]`` is the list of dataset items (``input``, ``target`` when labelled, ``mask``, ``id``, ...).
    """

    items: dict[str, list[dict]]

    def batches(self, split: str, shuffle_seed: int | None = None) -> list[dict]:
        """Batches of one item each (tensors gain a batch axis), in id order or shuffled by ``shuffle_seed``."""
        data = self.items[split]
        if shuffle_seed is None:
            return [{k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()} for item in data]
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
        return [{k: (v[None] if torch.is_tensor(v) else [v]) for k, v in data[i].items()} for i in order]

    def unlabelled(self, split: str) -> list[dict]:
        """Batches of ``split`` without T1: what a target-side method may see."""
        return [{k: v for k, v in b.items() if k != "target"} for b in self.batches(split)]

    def inputs(self, split: str) -> list[torch.Tensor]:
        """The (C, D, H, W) inputs of ``split``."""
        return [item["input"] for item in self.items[split]]


def load_data(dataroot: str, preprocess: PreprocessConfig, cache_dir: Path, splits: tuple[str, ...] = SPLITS,
              unlabelled: tuple[str, ...] = ("domain2_val",), stage: str = "compare-methods") -> Data:
    """Every split's preprocessed items (sorted by id), held in memory; all but ``unlabelled`` splits need T1.

    Args:
        dataroot: the BraTS-layout root.
        preprocess, cache_dir: how volumes become network inputs, and where the preprocessed ones are cached.
        splits: the splits to load; each must exist and hold subjects.
        unlabelled: splits whose subjects may lack a T1.
        stage: the command named in the error of a missing split.

    Returns:
        The loaded ``Data``.

    Raises:
        DataError: a split is missing or empty, or a subject of a labelled split has no T1.
    """
    from uda3d.data.datasets import unpaired_dataset

    found = discover(dataroot)
    for name in splits:
        if not found.get(name):
            raise DataError(Path(dataroot) / name, f"split is missing or empty; {stage} needs it")
    items = {}
    for name in splits:
        dataset = unpaired_dataset(sorted(found[name], key=lambda s: s.id), preprocess, cache_dir)
        items[name] = [dataset[i] for i in range(len(dataset))]
        if name not in unlabelled and any("target" not in it for it in items[name]):
            raise DataError(Path(dataroot) / name, "every subject needs a T1 here (training or scoring)")
    return Data(items)
