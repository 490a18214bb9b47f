"""fpn_variants: a pure-Python Detectron2 plugin (no compiled ops)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'^__version__ = "([^"]+)"', Path("fpn_variants/__init__.py").read_text(), re.M
).group(1)

setup(
    name="fpn_variants",
    version=VERSION,
    description="FPN, PANet, BiFPN and NAS-FPN necks for Detectron2 detectors",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fpn_variants", "fpn_variants.*"]),
    # torch, torchvision and Detectron2 are installed by `make` (see README): Detectron2 has no
    # official PyPI package, and the torch build depends on the machine.
    install_requires=[
        "numpy",
        "Pillow",
        "pycocotools",
        "fvcore",
        "iopath",
        "tqdm",
        "matplotlib",
        "tensorboard",
        "scipy",
    ],
    extras_require={"dev": ["pytest", "black", "isort", "flake8"]},
)
