#!/usr/bin/env python
"""Pre-generate the built-in synthetic dataset (otherwise made on first use) and print its stats.

    python tools/generate_data.py                    # into $FPN_VARIANTS_DATASETS or ./datasets
    python tools/generate_data.py --root /data/sets  # elsewhere
    python tools/generate_data.py --variant synthetic_multiscale_random_hue  # random hues

A second run is a no-op unless the generator version or parameters changed.
"""

import argparse
import json
import os
import time
from collections import Counter

from fpn_variants.data import (
    SYNTHETIC_VARIANTS,
    datasets_root,
    generate_synthetic_dataset,
    size_mix,
    variant_splits,
)
from fpn_variants.data.synthetic import DATASET_DIRNAME, DEFAULT_SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        default=None,
        help="datasets root (default: $FPN_VARIANTS_DATASETS or ./datasets); the data goes "
        "into <root>/<variant>",
    )
    parser.add_argument(
        "--variant",
        choices=list(SYNTHETIC_VARIANTS),
        default=DATASET_DIRNAME,
        help="which built-in dataset (registered as <variant>_train and <variant>_val)",
    )
    args = parser.parse_args()
    dataset_dir = os.path.join(args.root or datasets_root(), args.variant)
    start = time.perf_counter()
    paths = generate_synthetic_dataset(dataset_dir, variant_splits(args.variant))
    print(f"{dataset_dir} ready in {time.perf_counter() - start:.1f} s")
    for split, (json_file, _) in paths.items():
        mix = size_mix(json_file)
        with open(json_file) as f:
            data = json.load(f)
        names = {c["id"]: c["name"] for c in data["categories"]}
        per_class = Counter(names[a["category_id"]] for a in data["annotations"])
        print(
            f"{split}: {DEFAULT_SPLITS[split].num_images} images, {mix['num_annotations']} objects "
            f"({mix['num_annotations'] / len(data['images']):.2f} per image); "
            f"small {mix['small']:.1%}, medium {mix['medium']:.1%}, large {mix['large']:.1%}; "
            + ", ".join(f"{k} {v}" for k, v in sorted(per_class.items()))
        )


if __name__ == "__main__":
    main()
