"""``space.divisor: auto``: kept widths on the target's channel multiple (docs/channels.md, "Widths the kernels
reward"; the measurement is experiments/channel_multiple.py)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import nas.hardware.measure as measure
from nas.errors import ConfigError
from nas.hardware.arm_cpu import ArmCPUTarget
from nas.hardware.targets import LocalCPUTarget
from search_spaces.channels import ChannelSpace

ROOT = Path(__file__).resolve().parents[1]


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n")
    return path


@pytest.mark.parametrize("machine, flags, block", [
    ("x86_64", "fpu sse2 avx avx2 avx512f avx512bw", 16),
    ("x86_64", "fpu sse2 avx avx2 fma", 8),
    ("aarch64", "fp asimd avx512f", 8),  # the flag only counts on x86
])
def test_block_size_follows_the_cpu(monkeypatch, tmp_path, machine, flags, block):
    info = _cpuinfo(tmp_path, flags)
    real_open = open
    monkeypatch.setattr(measure.platform, "machine", lambda: machine)
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path,
                                                                            *a, **k))
    assert measure.onnxruntime_channel_block() == block


def test_targets_answer_for_their_own_kernels(monkeypatch):
    monkeypatch.setattr(measure, "onnxruntime_channel_block", lambda: 16)
    assert LocalCPUTarget().channel_multiple() == 16
    # a board behind an agent, and the ARM prior, are not this machine
    assert LocalCPUTarget(agent="http://127.0.0.1:9").channel_multiple() == 8
    assert ArmCPUTarget().channel_multiple() == 8


def _space_of(overrides: list[str]):
    from nas.pipeline import _data_space_target

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+space=channels", "space.base_config={width_mult: 0.35}",
                                                       *overrides])
    _data, space, target = _data_space_target(cfg, OmegaConf.to_container(cfg.space, resolve=True),
                                              OmegaConf.to_container(cfg.target, resolve=True))
    return space, target


@pytest.mark.parametrize("target, given, expected", [
    ("cpu", None, 16), ("arm_cpu", None, 8), ("cpu", 8, 8),
])
def test_search_rounds_widths_to_the_targets_multiple(monkeypatch, target, given, expected):
    monkeypatch.setattr(measure, "onnxruntime_channel_block", lambda: 16)
    extra = [] if given is None else [f"space.divisor={given}"]
    space, _target = _space_of([f"+target={target}", *extra])
    assert space.divisor == expected
    for label, widths in space.choices().items():
        full = next(g.channels for g in space.groups if g.label == label)
        assert all(w % expected == 0 or w == full for w in widths), (label, widths)


def test_a_divisor_that_is_neither_a_number_nor_auto_is_refused():
    with pytest.raises(ConfigError, match="space.divisor='wide'.*auto"):
        ChannelSpace(base_config={"width_mult": 0.35}, divisor="wide")
