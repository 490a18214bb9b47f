#!/usr/bin/env bash
# Install Detectron2 into the virtual environment of the given python, unless it is importable.
#
# Detectron2's authors publish no PyPI package. Without GitHub access, the route that works is
# `sal-detectron2==0.7.2`: upstream detectron2 at commit a59f0563 (2024-04-17) as a py3.10 wheel,
# installed by tag into site-packages without its dependencies (requirements.txt pins them). Its
# compiled ops are for CPython 3.10 only, so it runs in Detectron2's pure-Python mode: everything
# Faster R-CNN, RetinaNet and Mask R-CNN need works; deformable conv and rotated boxes do not.
#
# With GitHub access, the official install works too:
#   pip install 'git+https://github.com/facebookresearch/detectron2.git'
set -euo pipefail
PYTHON=${1:-python}
if "$PYTHON" -c "import detectron2" 2>/dev/null; then
    echo "detectron2 is already importable: $("$PYTHON" -c 'import detectron2; print(detectron2.__file__)')"
    exit 0
fi
SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PYTHON" -m pip install --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
    --target "$SITE" sal-detectron2==0.7.2
"$PYTHON" -c "import detectron2; print('installed detectron2', detectron2.__version__)"
