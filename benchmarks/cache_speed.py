"""How much faster a second pass over a split is with the per-subject preprocessing cache.

Generates a synthetic cohort (default: BraTS-like 240x240x155), then loads one split twice through
``uda3d.data.prepare.preprocess_root``: the first pass decodes NIfTI and fills the cache, the
second reads it back. Both passes run in this one process, so the ratio is robust to a noisy
machine. The last line printed ends with the ratio. Goal: >= 5x.

    python benchmarks/cache_speed.py [--shape 240 240 155] [--subjects 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.config import PreprocessConfig
from uda3d.data.prepare import preprocess_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155])
    parser.add_argument("--subjects", type=int, default=5, help="subjects per site (60%% land in train)")
    parser.add_argument("--repeats", type=int, default=3, help="cached passes to average")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cohort"
        start = time.perf_counter()
        generate_cohort(root, CohortConfig(sites=("site-a",), subjects_per_site=args.subjects,
                                           shape=tuple(args.shape)), progress=False)
        print(f"generated {args.subjects} subjects at {tuple(args.shape)} in {time.perf_counter() - start:.1f} s")
        cache, config, split = Path(tmp) / "cache", PreprocessConfig(), ("domain1_train",)
        [first] = preprocess_root(root, config, cache, splits=split, progress=False)
        cached = [preprocess_root(root, config, cache, splits=split, progress=False)[0].seconds
                  for _ in range(args.repeats)]
        second = sum(cached) / len(cached)
        print(f"{first.split}: {first.subjects} subjects, input {first.shape}")
        print(f"first pass (decode .nii.gz + preprocess): {first.seconds:.3f} s")
        print(f"cached pass (mean of {args.repeats}): {second:.3f} s")
        print(f"cache speed-up (first / cached): {first.seconds / second:.1f}")


if __name__ == "__main__":
    main()
