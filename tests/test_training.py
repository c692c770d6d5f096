"""Supernet training by progressive shrinking, and checkpoint files.

Uses a tiny weight-sharing space defined here (``ElasticToySpace``: elastic resolution, kernel, depth and
expand, like OFA) on a few hundred 8x8 digits, so every training run takes well under a second.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.checkpoint import load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint
from nas.data import load_data
from nas.errors import ConfigError, ModelError
from nas.training import (
    STATE_FILE,
    SUPERNET_FILE,
    EpochReport,
    TrainConfig,
    load_trained_supernet,
    phase_plan,
    train_supernet,
)
from search_spaces.base import Supernet
from tests.toy_space import ElasticToySpace, make_supernet



pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(batch_size=32, lr=0.1, epochs={"full": 2, "kernel": 1, "depth": 1, "expand": 1}, calib_images=64)


@pytest.fixture(scope="module")
def digits():
    return load_data(name="digits", limit=300, seed=0)


# ------------------------------------------------------------------------------------------ config
def test_config_validation_names_the_bad_field() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="kd_ratio"):
        TrainConfig(kd_ratio=-1)
    with pytest.raises(ConfigError, match="shrink_lr"):
        TrainConfig(shrink_lr=0.0)
    with pytest.raises(ConfigError, match=r"epochs\['full'\]"):
        TrainConfig(epochs={"full": -1})
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"batch": 3})
    with pytest.raises(TypeError):
        TrainConfig(64)  # keyword-only
    cfg = TrainConfig(epochs={"full": 1})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    json.dumps(cfg.to_dict())


def test_phase_plan_grows_elastic_dims_in_order() -> None:
    plan = phase_plan(ElasticToySpace(), TrainConfig(epochs={"full": 2, "depth": 1}))
    assert [(p.name, p.elastic, p.epochs) for p in plan] == [
        ("full", ("resolution",), 2),
        ("kernel", ("resolution", "kernel"), 0),
        ("depth", ("resolution", "kernel", "depth"), 1),
        ("expand", ("resolution", "kernel", "depth", "expand"), 0),
    ]
    with pytest.raises(ConfigError, match="unknown phase"):
        phase_plan(ElasticToySpace(), TrainConfig(epochs={"width": 1}))


# ------------------------------------------------------------------------------------------ checkpoint files
def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    tensors = {
        "a.weight": torch.randn(3, 4),
        "b": torch.arange(5),
        "flag": torch.tensor([True, False]),
        "half": torch.randn(2).to(torch.bfloat16),
        "np": np.linspace(0, 1, 7),
    }
    meta = {"phase": "kernel", "betas": (0.9, 0.999), "nested": {"x": [1, 2.5, None]}}
    save_checkpoint(tmp_path / "c.npz", tensors, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "c.npz")
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        expected = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
        assert loaded[name].dtype == expected.dtype and torch.equal(loaded[name], expected)
    assert loaded_meta == meta
    assert isinstance(loaded_meta["betas"], tuple)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.npz"
    save_checkpoint(path, {"w": torch.ones(3)}, {"version": 1})

    def broken_savez(handle, **arrays):
        handle.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"version": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]  # no temp file left behind
    tensors, meta = load_checkpoint(path)  # the old file is intact
    assert meta == {"version": 1} and torch.equal(tensors["w"], torch.ones(3))


def test_corrupt_or_missing_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": torch.randn(100)}, {"a": 1})
    path.write_bytes(path.read_bytes()[:150])  # truncated
    with pytest.raises(ModelError, match="corrupt"):
        load_checkpoint(path)
    path.write_text("not a zip")
    with pytest.raises(ModelError, match="corrupt"):
        load_checkpoint(path)
    np.savez(tmp_path / "plain.npz", x=np.ones(2))
    with pytest.raises(ModelError, match="not an hwnas checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")


def test_checkpoint_never_needs_pickle(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.npz", {"w": torch.ones(2)}, {"k": "v"})
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert sorted(zf.namelist()) == ["__dtypes__.npy", "__meta__.npy", "w.npy"]
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert json.loads(str(archive["__meta__"])) == {"k": "v"}


@pytest.mark.parametrize("make", [
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
    lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.8, 0.95)),
])
def test_optimizer_state_round_trip_resumes_exactly(make, tmp_path: Path) -> None:
    def run(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
        for i in range(steps):
            opt.zero_grad()
            model(torch.full((2, 3), float(i))).pow(2).sum().backward()
            opt.step()

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    reference = copy.deepcopy(model)
    opt_ref = make(reference.parameters())
    run(reference, opt_ref, 4)

    opt = make(model.parameters())
    run(model, opt, 2)
    tensors, meta = optimizer_to_tensors(opt.state_dict())
    save_checkpoint(tmp_path / "o.npz", {**tensors, **{f"m.{k}": v for k, v in model.state_dict().items()}}, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "o.npz")
    resumed = nn.Linear(3, 2)
    resumed.load_state_dict({k[2:]: v for k, v in loaded.items() if k.startswith("m.")})
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(optimizer_from_tensors(loaded, loaded_meta))
    run_from = [2, 3]
    for i in run_from:
        opt2.zero_grad()
        resumed(torch.full((2, 3), float(i))).pow(2).sum().backward()
        opt2.step()
    for a, b in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------ training
def test_tiny_training_lowers_the_loss_and_writes_checkpoints(digits, tmp_path: Path) -> None:
    space = ElasticToySpace()
    supernet = make_supernet(space)
    seen: list[tuple[str, int, dict]] = []

    def check(report: EpochReport) -> None:
        assert report.checkpoint.is_file()
        _, meta = load_checkpoint(report.checkpoint)
        seen.append((report.phase, report.epoch, meta["position"]))

    config = TrainConfig(**{**TINY, "epochs": {"full": 4, "kernel": 1, "depth": 1, "expand": 1}})
    summary = train_supernet(space, supernet, digits, config=config, checkpoint_dir=tmp_path, progress=False,
                             on_epoch_end=check)
    losses = summary["phases"][0]["epoch_losses"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert [(p, e) for p, e, _ in seen] == [("full", 1), ("full", 2), ("full", 3), ("full", 4),
                                            ("kernel", 1), ("depth", 1), ("expand", 1)]
    assert seen[3][2] == {"phase": 0, "epoch": 4, "finished": False}
    _, full_end = load_checkpoint(tmp_path / STATE_FILE)
    assert full_end["position"]["finished"]
    assert (tmp_path / SUPERNET_FILE).is_file()
    for key in ("largest", "smallest"):
        assert 0.0 <= summary["val_accuracy"][key] <= 1.0
    assert summary["val_accuracy"]["largest"] > 0.3  # well above chance (0.1) after a second of training
    assert [p["name"] for p in summary["phases"]] == ["full", "kernel", "depth", "expand"]

    loaded, meta = load_trained_supernet(tmp_path / SUPERNET_FILE, space)
    for key, value in supernet.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert meta["data"]["name"] == "digits" and meta["summary"] == summary


def test_teacher_is_saved_from_end_of_full_phase(digits, tmp_path: Path) -> None:
    space = ElasticToySpace()
    supernet = make_supernet(space)
    config = TrainConfig(**TINY)
    snapshots = {}

    def grab(report: EpochReport) -> None:
        if report.phase == "full" and report.epoch == report.epochs:
            snapshots["full_end"] = copy.deepcopy(supernet.state_dict())

    train_supernet(space, supernet, digits, config=config, checkpoint_dir=tmp_path, progress=False, on_epoch_end=grab)
    tensors, _ = load_checkpoint(tmp_path / STATE_FILE)
    teacher = {k[len("teacher."):]: v for k, v in tensors.items() if k.startswith("teacher.")}
    weights = {k: v for k, v in teacher.items() if "running" not in k and "num_batches" not in k}
    assert weights and all(torch.equal(v, snapshots["full_end"][k]) for k, v in weights.items())


class _Interrupt(Exception):
    pass


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(digits, tmp_path: Path) -> None:
    space = ElasticToySpace()
    config = TrainConfig(**{**TINY, "subnets_per_step": 2})
    reference = make_supernet(space)
    expected = train_supernet(space, reference, digits, config=config, checkpoint_dir=tmp_path / "a", progress=False)

    # Interrupt in the middle of the full phase and again inside a shrinking phase (teacher in use).
    stops = {("full", 1), ("depth", 1)}

    def interrupt(report: EpochReport) -> None:
        if (report.phase, report.epoch) in stops:
            stops.discard((report.phase, report.epoch))
            raise _Interrupt

    supernet = make_supernet(space)
    for _ in range(2):
        with pytest.raises(_Interrupt):
            train_supernet(space, supernet, digits, config=config, checkpoint_dir=tmp_path / "b", progress=False,
                           on_epoch_end=interrupt)
        supernet = make_supernet(space, seed=123)  # a new process: fresh weights, all state from the checkpoint
    got = train_supernet(space, supernet, digits, config=config, checkpoint_dir=tmp_path / "b", progress=False,
                         on_epoch_end=interrupt)
    for key, value in reference.state_dict().items():
        assert torch.equal(supernet.state_dict()[key], value), key
    assert got["val_accuracy"] == expected["val_accuracy"]
    assert [p["epoch_losses"] for p in got["phases"]] == [p["epoch_losses"] for p in expected["phases"]]

    # A finished run is not retrained: its weights and summary come back from supernet.npz.
    again = make_supernet(space, seed=7)
    assert train_supernet(space, again, digits, config=config, checkpoint_dir=tmp_path / "b", progress=False) == got
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_resume_refuses_a_different_config(digits, tmp_path: Path) -> None:
    space = ElasticToySpace()
    config = TrainConfig(**{**TINY, "epochs": {"full": 1}})
    train_supernet(space, make_supernet(space), digits, config=config, checkpoint_dir=tmp_path, progress=False)
    other = TrainConfig(**{**TINY, "epochs": {"full": 1}, "lr": 0.01})
    with pytest.raises(ConfigError, match="different config.*lr"):
        train_supernet(space, make_supernet(space), digits, config=other, checkpoint_dir=tmp_path, progress=False)


def test_training_leaves_the_callers_rng_alone_and_progress_bar_works(digits, tmp_path: Path, capsys) -> None:
    space = ElasticToySpace()
    config = TrainConfig(**{**TINY, "epochs": {"full": 1, "kernel": 1}})
    torch.manual_seed(42)
    before = torch.get_rng_state()
    train_supernet(space, make_supernet(space), digits, config=config, checkpoint_dir=tmp_path / "p", progress=True)
    err = capsys.readouterr().err
    assert "supernet [phase kernel 2/4] epoch 1/1" in err and "loss" in err
    torch.manual_seed(42)
    assert torch.equal(torch.get_rng_state(), before)


def test_mismatched_space_and_data_are_config_errors(digits, tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "epochs": {"full": 1}})
    wrong_channels = ElasticToySpace(in_channels=3)
    with pytest.raises(ConfigError, match="in_channels=1"):
        train_supernet(wrong_channels, wrong_channels.supernet(), digits, config=config, checkpoint_dir=tmp_path)
    too_few = ElasticToySpace(num_classes=4)
    with pytest.raises(ConfigError, match="num_classes=10"):
        train_supernet(too_few, too_few.supernet(), digits, config=config, checkpoint_dir=tmp_path)


def test_loading_a_supernet_for_another_space_is_a_model_error(digits, tmp_path: Path) -> None:
    space = ElasticToySpace()
    config = TrainConfig(**{**TINY, "epochs": {"full": 1}})
    train_supernet(space, make_supernet(space), digits, config=config, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ModelError, match="other choices"):
        load_trained_supernet(tmp_path / SUPERNET_FILE, ElasticToySpace(max_depth=3))
    with pytest.raises(ModelError, match="do not fit"):
        load_trained_supernet(tmp_path / SUPERNET_FILE, ElasticToySpace(width=4))


def test_progressive_shrinking_on_the_ofa_space_resumes_exactly(tmp_path: Path) -> None:
    ofa = pytest.importorskip("search_spaces.ofa")
    space = ofa.OFASpace(width_mult=0.25, num_classes=10, in_channels=1, resolutions=(12, 16), depths=(1, 2))
    data = load_data(name="digits", limit=120, seed=0)
    config = TrainConfig(batch_size=16, lr=0.05, epochs={"full": 1, "kernel": 1, "depth": 1, "expand": 1},
                         calib_images=32, subnets_per_step=2)

    def fresh(seed: int = 0) -> Supernet:
        torch.manual_seed(seed)
        return space.supernet()

    reference = fresh()
    expected = train_supernet(space, reference, data, config=config, checkpoint_dir=tmp_path / "a", progress=False)
    assert [p["name"] for p in expected["phases"]] == ["full", "kernel", "depth", "expand"]

    def stop_after_kernel(report: EpochReport) -> None:
        if report.phase == "kernel":
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_supernet(space, fresh(), data, config=config, checkpoint_dir=tmp_path / "b", progress=False,
                       on_epoch_end=stop_after_kernel)
    resumed = fresh(seed=5)
    got = train_supernet(space, resumed, data, config=config, checkpoint_dir=tmp_path / "b", progress=False)
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert got["val_accuracy"] == expected["val_accuracy"]


def test_the_shipped_default_supernet_matches_the_default_config():
    """The package ships the supernet the default config trains; if the default space, data or training
    config changes, its cache key changes and this fails: rerun experiments/ship_default_supernet.py."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nas.data import load_data
    from nas.pipeline import SHIPPED_SUPERNETS, make_space, supernet_key
    from nas.training import load_trained_supernet

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+space=ofa", "+target=cpu"])
    space_cfg = OmegaConf.to_container(cfg.space, resolve=True)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    path = SHIPPED_SUPERNETS / f"ofa-{supernet_key(space_cfg, data_cfg, int(cfg.seed))}.npz"
    assert path.is_file(), f"no shipped supernet for the default config: run experiments/ship_default_supernet.py"
    data = load_data(**data_cfg, seed=int(cfg.seed))
    space = make_space(space_cfg, num_classes=data.num_classes, in_channels=data.in_channels)
    supernet, meta = load_trained_supernet(path, space)
    assert meta["summary"]["val_accuracy"]["largest"] > 0.9
