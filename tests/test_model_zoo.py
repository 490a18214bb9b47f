"""Model zoo: package a training output folder, load it back verified, refuse tampered files."""

import importlib.util
import json
import math
import shutil
import socket
from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model

from fpn_variants import add_fpn_variants_config
from fpn_variants import model_zoo as mz
from fpn_variants.model_zoo import table as mz_table
from fpn_variants.model_zoo.packaging import git_commit

from .utils import make_cfg

REPO = Path(__file__).resolve().parents[1]
NAME = "faster_rcnn_R18_FPN_tiny"
# Final evaluation written to metrics.json (COCO reports NaN for an empty area range).
FINAL_BOX = {"AP": 37.5, "AP50": 58.25, "AP75": 40.0, "APs": float("nan"), "APm": 30.5, "APl": 45.0}


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_faster_rcnn_cfg(output_dir: Path) -> CfgNode:
    cfg = make_cfg("build_fpn_backbone", "p2p6", channels=16)
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.DATASETS.TRAIN = ("zoo_tiny_train",)
    cfg.DATASETS.TEST = ("zoo_tiny_val",)
    cfg.OUTPUT_DIR = str(output_dir)
    return cfg


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    """A fake Detectron2 training output folder with a real (untrained) tiny model."""
    out = tmp_path_factory.mktemp("train") / "faster_rcnn_R18_FPN_tiny"
    out.mkdir()
    cfg = _tiny_faster_rcnn_cfg(out)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates momentum buffers; zero gradients leave the weights unchanged
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {"base_lrs": [0.01], "last_epoch": 2},
            "iteration": 1,
        },
        out / "model_final.pth",
    )
    (out / "config.yaml").write_text(cfg.dump())
    lines = [
        {"iteration": 0, "total_loss": 3.2, "lr": 0.01},
        {"bbox/AP": 1.0, "bbox/AP50": 2.0, "bbox/AP75": 0.5, "bbox/APs": 0.0, "iteration": 0},
        {"iteration": 1, "total_loss": 2.9, "lr": 0.01},
        {**{f"bbox/{k}": v for k, v in FINAL_BOX.items()}, "bbox/AP-cat": 9.0, "iteration": 2},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"iteration": 3, "tot'
    (out / "metrics.json").write_text(text)  # last line cut, as by an interrupted run
    (out / "log.txt").write_text(
        "[11/25 13:39:41] fpn_variants.engine INFO: Training iterations: 3 in 65.0 s (0:01:05); "
        "21.6667 s / it, 0.18 images / s after the first 3; start-up, checkpoints, evaluation "
        "and PreciseBN excluded\n"
        "[11/25 13:39:41] d2.engine.hooks INFO: Total training time: 0:02:05 (0:01:00 on hooks)\n"
    )
    return out, state, sum(p.numel() for p in model.parameters())


def _package(train_dir, tmp_path, **kwargs):
    out, _, _ = train_dir
    manifest = tmp_path / "zoo" / "manifest.json"
    kwargs.setdefault("releases_dir", tmp_path / "releases")
    entry = mz.package(out, NAME, manifest=manifest, **kwargs)
    return manifest, entry


def _files(folder: Path):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_package_then_get_round_trip(train_dir, tmp_path, monkeypatch):
    out, state, n_params = train_dir
    manifest, entry = _package(train_dir, tmp_path, costs={"gflops": 1.25})

    release = tmp_path / "releases" / NAME
    weights = release / f"model_{entry['weights']['sha256'][:8]}.pth"
    assert sorted(p.name for p in release.iterdir()) == sorted(
        ["config.yaml", "metrics.json", "release.json", weights.name]
    )
    assert entry["weights"]["sha256"] == mz.sha256sum(weights)
    assert entry["weights"]["size"] == weights.stat().st_size
    assert entry["detector"] == "Faster R-CNN" and entry["neck"] == "FPN"
    assert set(entry["versions"]) >= {"torch", "detectron2", "fpn_variants"}
    metrics = entry["metrics"]
    assert metrics["dataset"] == "zoo_tiny_val"
    assert metrics["tasks"] == {"bbox": {**FINAL_BOX, "APs": None}}  # last eval, NaN -> None
    assert metrics["params"] == n_params and metrics["gflops"] == 1.25
    assert metrics["train_time_s"] == 65.0 and metrics["latency_ms"] is None
    assert json.loads((release / "metrics.json").read_text())["tasks"] == metrics["tasks"]
    assert json.loads(manifest.read_text())["models"][NAME] == entry

    # Weights only: no optimizer / scheduler state.
    ckpt = torch.load(weights, weights_only=True)
    assert set(ckpt) == {"model", mz.META_KEY}
    assert ckpt[mz.META_KEY]["builder"] == "build_fpn_backbone"

    # The packaged config: resolved, no weights, no local paths.
    text = (release / "config.yaml").read_text()
    assert str(out) not in text and str(tmp_path) not in text
    cfg = mz.get_config(NAME, manifest=manifest)
    assert isinstance(cfg, CfgNode) and "BIFPN" in cfg.MODEL
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.FPN.OUT_CHANNELS == 16
    assert mz.get_config(NAME, trained=True, manifest=manifest).MODEL.WEIGHTS == str(weights)

    model = mz.get(NAME, manifest=manifest)
    assert not model.training
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    monkeypatch.setenv(mz.MANIFEST_ENV, str(manifest))  # the env var moves the default manifest
    assert mz.list_models() == [NAME]


def test_tampered_files_are_refused(train_dir, tmp_path):
    manifest, entry = _package(train_dir, tmp_path)
    weights = manifest.parent / entry["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    actual = mz.sha256sum(weights)
    for load in (mz.get, mz.get_checkpoint):
        with pytest.raises(ValueError) as err:
            load(NAME, manifest=manifest)
        message = str(err.value)
        assert NAME in message and str(manifest) in message
        assert entry["weights"]["sha256"] in message and actual in message

    config = manifest.parent / entry["config"]["packaged"]
    config.write_text(config.read_text().replace("OUT_CHANNELS: 16", "OUT_CHANNELS: 17"))
    with pytest.raises(ValueError, match="sha256"):
        mz.get_config(NAME, manifest=manifest)


def test_unknown_name_lists_available_models(train_dir, tmp_path):
    manifest, _ = _package(train_dir, tmp_path)
    for load in (mz.get, mz.get_config, mz.get_checkpoint):
        with pytest.raises(KeyError) as err:
            load("retinanet_R18_NASFPN", manifest=manifest)
        assert "retinanet_R18_NASFPN" in str(err.value) and NAME in str(err.value)
        assert str(manifest) in str(err.value)


def test_weights_from_url_are_cached_and_verified(train_dir, tmp_path, monkeypatch):
    manifest, entry = _package(train_dir, tmp_path, base_url="https://example.org/zoo/")
    assert (
        entry["weights"]["url"]
        == f"https://example.org/zoo/{NAME}/model_{entry['weights']['sha256'][:8]}.pth"
    )
    server = tmp_path / "server"
    server.mkdir()
    hosted = server / "weights.pth"
    shutil.move(manifest.parent / entry["weights"]["file"], hosted)
    calls = []

    def fake_download(url, dst):
        calls.append(url)
        shutil.copyfile(hosted, dst)

    monkeypatch.setattr(mz.loading, "download_url", fake_download)
    monkeypatch.setenv(mz.CACHE_ENV, str(tmp_path / "cache"))

    path = Path(mz.get_checkpoint(NAME, manifest=manifest))
    assert calls == [entry["weights"]["url"]]
    assert (
        path.parent == tmp_path / "cache" / NAME
        and mz.sha256sum(path) == entry["weights"]["sha256"]
    )
    assert mz.get_checkpoint(NAME, manifest=manifest) == str(path) and len(calls) == 1  # cached
    assert not mz.get(NAME, manifest=manifest).training and len(calls) == 1

    path.write_bytes(path.read_bytes()[:-1])  # a damaged cached copy is downloaded again
    assert mz.get_checkpoint(NAME, manifest=manifest) == str(path) and len(calls) == 2

    data = bytearray(hosted.read_bytes())
    data[100] ^= 0xFF
    hosted.write_bytes(bytes(data))  # the server now serves a tampered file
    path.unlink()
    with pytest.raises(ValueError, match=entry["weights"]["sha256"]):
        mz.get_checkpoint(NAME, manifest=manifest)
    assert list(path.parent.iterdir()) == []  # nothing unverified is left in the cache


def test_an_unreachable_weights_url_names_the_model_the_url_and_what_to_do(
    train_dir, tmp_path, monkeypatch
):
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest, entry = _package(train_dir, tmp_path, base_url=f"http://127.0.0.1:{port}/zoo/")
    (manifest.parent / entry["weights"]["file"]).unlink()
    monkeypatch.setenv(mz.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(mz.DownloadError) as err:
        mz.get_checkpoint(NAME, manifest=manifest)
    message = str(err.value)
    assert f"model {NAME!r}" in message and entry["weights"]["url"] in message
    assert "Connection refused" in message  # the cause
    assert str(tmp_path / "cache" / NAME) in message  # where a copy fetched by hand goes
    assert isinstance(err.value, OSError)
    assert list((tmp_path / "cache" / NAME).iterdir()) == []


@pytest.mark.parametrize(
    "edit,problem",
    [
        (lambda e: e["weights"].pop("sha256"), "'weights.sha256' is missing"),
        (lambda e: e["config"].update(sha256="abc"), "'config.sha256'='abc' is not a sha256"),
        (lambda e: e["config"].pop("packaged"), "'config.packaged' is missing"),
        (lambda e: e.pop("weights"), "'weights' is missing"),
    ],
    ids=["no-weights-sha256", "short-config-sha256", "no-packaged-config", "no-weights"],
)
def test_manifest_entries_are_checked_when_the_manifest_is_read(train_dir, tmp_path, edit, problem):
    manifest, _ = _package(train_dir, tmp_path)
    data = json.loads(manifest.read_text())
    edit(data["models"][NAME])
    manifest.write_text(json.dumps(data))
    for read in (mz.list_models, lambda m: mz.get_config(NAME, manifest=m)):
        with pytest.raises(ValueError) as err:
            read(manifest)
        message = str(err.value)
        assert f"model zoo manifest {manifest}: entry {NAME!r}: {problem}" in message


def test_model_zoo_md(train_dir, tmp_path):
    manifest, entry = _package(train_dir, tmp_path, costs={"latency_ms": 12.0})
    # More rows in other (detector, neck) cells, sharing the verified packaged config.
    data = json.loads(manifest.read_text())
    for name, detector, neck in [
        ("a_retina_bifpn", "RetinaNet", "BiFPN"),
        ("b_faster_nasfpn", "Faster R-CNN", "NAS-FPN"),
        ("c_faster_panet", "Faster R-CNN", "PANet"),
    ]:
        data["models"][name] = {**entry, "name": name, "detector": detector, "neck": neck}
    manifest.write_text(json.dumps(data))
    assert mz.list_models(manifest) == [NAME, "c_faster_panet", "b_faster_nasfpn", "a_retina_bifpn"]

    output = tmp_path / "MODEL_ZOO.md"
    zoo_table = _tool("zoo_table")
    assert zoo_table.main(["--manifest", str(manifest), "--output", str(output)]) == 0
    text = output.read_text()
    title, _, provenance = text.splitlines()[:3]  # the releases' commit and the command
    assert title == "# fpn_variants Model Zoo"
    assert "by `python tools/zoo_table.py --manifest " in provenance
    assert (entry["versions"]["fpn_variants_git"] or "commit not recorded") in provenance
    for section in ("## How to read the tables", "## Common settings", "## Models"):
        assert section in text
    assert "CPU" in text and "ResNet-18" in text and "128 (max 128)" in text
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert [row.split("]")[0][3:] for row in rows] == mz.list_models(manifest)
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    link = f"[{NAME}](zoo/configs/{NAME}.yaml)"  # the packaged config, next to the manifest
    assert cells == [
        link, "Faster R-CNN", "FPN", f"{entry['metrics']['params'] / 1e6:.2f}", "–", "0:01:05",
        "12.0", "37.5", "58.2", "40.0", "–", "30.5", "45.0", "–",
        f"`{entry['weights']['sha256'][:8]}`", f'`fpn_variants.model_zoo.get("{NAME}")`',
    ]  # fmt: skip
    assert zoo_table.main(["--manifest", str(manifest), "--output", str(output), "--check"]) == 0
    output.write_text(text.replace("37.5", "99.9"))  # hand-edited -> --check fails
    assert zoo_table.main(["--manifest", str(manifest), "--output", str(output), "--check"]) == 1


def test_repackaging_needs_overwrite(train_dir, tmp_path, capsys):
    manifest, entry = _package(train_dir, tmp_path)
    releases = tmp_path / "releases"
    before = _files(releases), manifest.read_bytes()

    with pytest.raises(FileExistsError, match="--overwrite"):
        _package(train_dir, tmp_path)
    package_model = _tool("package_model")
    argv = [str(train_dir[0]), "--name", NAME, "--manifest", str(manifest)]
    argv += ["--releases-dir", str(releases)]
    assert package_model.main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (_files(releases), manifest.read_bytes()) == before  # untouched

    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps({"zoo_tiny_val": {"bbox": {"AP": 40.0, "AP50": 60.0}}}))
    assert package_model.main(argv + ["--overwrite", "--metrics", str(metrics)]) == 0
    models = json.loads(manifest.read_text())["models"]
    assert list(models) == [NAME]
    assert models[NAME]["metrics"]["tasks"] == {"bbox": {"AP": 40.0, "AP50": 60.0}}
    assert [p.name for p in releases.iterdir()] == [NAME]  # no staging or old folders left
    assert mz.get(NAME, manifest=manifest).roi_heads.num_classes == 3


def test_a_release_names_the_commit_its_weights_were_trained_at(train_dir, tmp_path):
    """tools/build_zoo.py gives the run record's commit: the release (and MODEL_ZOO.md's
    provenance line) names the code that trained it, not the checkout that packaged it."""
    _, entry = _package(train_dir, tmp_path, trained_at="0123456789ab")
    assert entry["versions"]["fpn_variants_git"] == "0123456789ab"
    _, entry = _package(train_dir, tmp_path, overwrite=True)
    assert entry["versions"]["fpn_variants_git"] == git_commit()


def test_mismatched_weights_are_not_packaged(train_dir, tmp_path):
    out, state, _ = train_dir
    bad = tmp_path / "bad.pth"
    torch.save({"model": {k: v for k, v in state.items() if "box_predictor" not in k}}, bad)
    with pytest.raises(ValueError, match="missing keys"):
        _package(train_dir, tmp_path, weights=bad)
    assert not (tmp_path / "zoo" / "manifest.json").exists()
    assert not (tmp_path / "releases").exists()  # checked before anything is written


def test_metrics_readers(tmp_path):
    log = tmp_path / "metrics.json"
    records = [
        {"val_a/bbox/AP": 1.0, "val_b/bbox/AP": 2.0, "val_b/segm/AP": 3.0, "iteration": 9},
        {"val_b/bbox/AP": 4.0, "iteration": 10},
    ]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    assert mz.read_training_metrics(log, "val_b") == {"bbox": {"AP": 4.0}, "segm": {"AP": 3.0}}
    with pytest.raises(ValueError, match="val_a"):
        mz.read_training_metrics(log)  # two test sets: which one must be said

    given = tmp_path / "m.json"
    given.write_text(json.dumps({"segm": {"AP": 30.0}, "bbox": {"AP": 35.0, "APs": None}}))
    assert mz.read_metrics_file(given) == {"bbox": {"AP": 35.0, "APs": None}, "segm": {"AP": 30.0}}
    given.write_text(json.dumps({"bbox/AP50": 50.0}))
    assert mz.read_metrics_file(given) == {"bbox": {"AP50": 50.0}}
    given.write_text(json.dumps({"val_a": {"bbox": {"AP": 1.0}}}))
    with pytest.raises(ValueError, match="no results of 'val_b'"):
        mz.read_metrics_file(given, "val_b")  # another test set's results are not taken silently
    given.write_text(json.dumps({"loss": 1.0}))
    with pytest.raises(ValueError, match="no COCO metrics"):
        mz.read_metrics_file(given)

    # The training iterations alone: ours, else Detectron2's rate (s / it after 3 warm-up
    # iterations) times the iterations; never the total with evaluation and other hooks.
    train_log = tmp_path / "log.txt"
    d2_lines = (
        "Overall training speed: 7 iterations in 0:00:05 (0.5000 s / it)\n"
        "Total training time: 0:01:00 (0:00:55 on hooks)\n"
    )
    train_log.write_text(d2_lines)
    assert mz.read_training_time(train_log) == 0.5 * (7 + 3)
    train_log.write_text("Training iterations: 9 in 12.5 s (0:00:12); ...\n" + d2_lines)
    assert mz.read_training_time(train_log) == 12.5
    train_log.write_text("Total training time: 1:00:00 (0:59:00 on hooks)\n")
    assert mz.read_training_time(train_log) is None
    assert mz.parse_duration("0:01:30") == 90.0 and mz.parse_duration("12.5") == 12.5
    assert math.isclose(mz.parse_duration("1 day, 0:00:01"), 86401.0)


def test_invalid_names_are_refused(train_dir, tmp_path):
    with pytest.raises(ValueError, match="not valid"):
        mz.package(train_dir[0], "../escape", manifest=tmp_path / "m.json", releases_dir=tmp_path)


def test_committed_model_zoo_md_is_generated_from_the_committed_manifest():
    """MODEL_ZOO.md is never hand-edited: it is what `make zoo` renders from the manifest."""
    manifest = REPO / "model_zoo" / "manifest.json"
    output = REPO / "MODEL_ZOO.md"
    expected = mz.render_model_zoo(manifest, output, command=_tool("build_zoo").COMMAND)
    assert output.read_text() == expected
    rows = [line for line in expected.splitlines() if line.startswith("| [")]
    cells = {tuple(c.strip() for c in row.strip("|").split("|")[1:3]) for row in rows}
    detectors = ("Faster R-CNN", "RetinaNet", "Mask R-CNN")
    necks = ("FPN", "PANet", "BiFPN", "NAS-FPN")
    assert cells == {(d, n) for d in detectors for n in necks}


@pytest.mark.parametrize("neck, norm", [("FPN", "none"), ("BiFPN", "GN"), ("NASFPN", "GN")])
def test_common_settings_give_the_norm_the_neck_reads(neck, norm):
    """BiFPN's and NAS-FPN's norm is their own key (MODEL.BIFPN.NORM, ...), not MODEL.FPN.NORM."""
    cfg = add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs" / "Synthetic" / f"faster_rcnn_R18_{neck}.yaml"))
    assert mz_table._neck(cfg, {}) == f"64 channels, norm {norm}"
