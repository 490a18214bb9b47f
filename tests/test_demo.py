"""tools/demo.py: predictions of a trained model drawn on images; clear errors for bad input."""

import importlib.util
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from PIL import Image

from fpn_variants import model_zoo
from fpn_variants.predict import image_paths

from .utils import ROOT, SYNTHETIC_FPN, TINY_TRAINING, builtin_data_in, train_few_iterations


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_tool("demo")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    with builtin_data_in(tmp_path_factory.mktemp("datasets"), 4, 2):
        yield train_few_iterations(tmp_path_factory.mktemp("train"))


def _val_images():
    return [record["file_name"] for record in DatasetCatalog.get("synthetic_multiscale_val")]


def test_demo_draws_predictions_on_a_builtin_image(weights, tmp_path, capsys):
    image = _val_images()[0]
    out = tmp_path / "pred.png"
    opts = ["--opts", *TINY_TRAINING, "MODEL.WEIGHTS", weights]
    args = ["--config-file", SYNTHETIC_FPN, "--input", image, "--output", str(out)]
    assert demo.main([*args, "--confidence-threshold", "0", *opts]) == 0
    picture = np.asarray(Image.open(out))
    original = np.asarray(Image.open(image).convert("RGB"))
    assert picture.shape == original.shape  # drawn at the input's size, not the model's 128 px
    assert not np.array_equal(picture, original)  # threshold 0: every detection is drawn
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.endswith(f"-> {out}")
    # a folder in, a folder out: one picture per image, named as the input
    assert demo.main(["--config-file", SYNTHETIC_FPN, "--input", os.path.dirname(image)]
                     + ["--output", str(tmp_path / "all"), *opts]) == 0  # fmt: skip
    assert sorted(os.listdir(tmp_path / "all")) == sorted(
        os.path.basename(p) for p in image_paths([os.path.dirname(image)])
    )


def test_demo_errors_name_the_problem(weights, tmp_path, capsys):
    base = ["--config-file", SYNTHETIC_FPN, "--output", str(tmp_path / "out")]
    with_weights = ["--opts", "MODEL.WEIGHTS", weights]
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    cases = {
        "input image /no/such.jpg does not exist": ["--input", "/no/such.jpg", *with_weights],
        "holds no image": ["--input", str(tmp_path / "empty"), *with_weights],
        "matches no file": ["--input", str(tmp_path / "*.png"), *with_weights],
        f"cannot read image {tmp_path / 'broken.jpg'}": [
            "--input", str(tmp_path / "broken.jpg"), *with_weights
        ],
        "MODEL.WEIGHTS is empty": ["--input", _val_images()[0]],
    }  # fmt: skip
    for message, args in cases.items():
        assert demo.main([*base, *args]) == 2, message
        assert message in capsys.readouterr().err
    two = ["--input", *_val_images()[:2], "--output", str(tmp_path / "one.jpg"), *with_weights]
    assert demo.main(["--config-file", SYNTHETIC_FPN, *two]) == 2
    assert "give a folder" in capsys.readouterr().err


def test_demo_takes_a_model_zoo_name(weights, tmp_path, monkeypatch, capsys):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"bbox": {"AP": 0.1}}))
    manifest = tmp_path / "zoo" / "manifest.json"
    model_zoo.package(
        os.path.dirname(weights),
        "tiny_fpn",
        manifest=manifest,
        releases_dir=tmp_path / "releases",
        metrics_file=metrics,
    )
    monkeypatch.setenv(model_zoo.MANIFEST_ENV, str(manifest))
    image, out = _val_images()[0], tmp_path / "zoo.jpg"
    assert demo.main(["--model-zoo", "tiny_fpn", "--input", image, "--output", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(image)).shape
    assert demo.main(["--model-zoo", "nope", "--input", image]) == 2
    assert "error: no model named 'nope'" in capsys.readouterr().err
