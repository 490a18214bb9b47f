"""fpn_variants: feature-pyramid necks (FPN, PANet, BiFPN, NAS-FPN) for Detectron2."""

from .console import upstream_warnings_hidden

# fvcore and detectron2 print deprecation notices about their own code when imported
with upstream_warnings_hidden():
    from . import backbone as _backbone  # noqa: F401  registers the build_*_backbone builders
    from . import data  # noqa: F401  registers the built-in datasets
    from . import roi_heads as _roi_heads  # noqa: F401  registers PyramidROIHeads
    from .config import add_fpn_variants_config
    from .necks import FPN, NASFPN, BiFPN, PANet, PyramidNeck

__version__ = "0.1.0"

__all__ = [
    "FPN",
    "NASFPN",
    "BiFPN",
    "PANet",
    "PyramidNeck",
    "add_fpn_variants_config",
    "__version__",
]
