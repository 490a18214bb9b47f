"""Importing the peer implementations for tests (:mod:`fpn_variants.peers`): outside CI a
missing peer skips its tests; in CI (CI=true) it is an error."""

import os

import pytest

from fpn_variants import peers


def import_peer(module: str):
    """Import a peer module; skip the test when it is missing, unless running in CI."""
    if os.environ.get("CI"):
        return peers.import_peer(module)
    try:
        return peers.import_peer(module)
    except ImportError as e:
        pytest.skip(f"peer not installed: pip install -r requirements-peers.txt ({e})")
