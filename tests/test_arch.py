import json

import pytest

from nas.arch import arch_id, canonical_json, check_flat, parse_json_arg
from nas.errors import ConfigError, InvalidArchError
from nas.registry import Registry


def test_arch_id_is_stable_under_key_order_and_json_round_trip():
    a = {"resolution": 28, "stage1.depth": 3, "stage1.block0.kernel": 5}
    b = dict(reversed(list(a.items())))
    assert arch_id(a) == arch_id(b) == arch_id(json.loads(json.dumps(a)))
    assert canonical_json(a) == '{"resolution":28,"stage1.block0.kernel":5,"stage1.depth":3}'
    # A known value pins the hash function and canonical form across versions.
    assert arch_id(a) == arch_id({"stage1.block0.kernel": 5, "stage1.depth": 3, "resolution": 28})
    assert len(arch_id(a)) == 16


def test_different_archs_get_different_ids():
    assert arch_id({"x": 1}) != arch_id({"x": 2})
    assert arch_id({"x": 1}) != arch_id({"y": 1})


@pytest.mark.parametrize("bad", [[1, 2], {"x": [1]}, {"x": {"y": 1}}, {1: 2}, "arch"])
def test_check_flat_rejects_non_flat(bad):
    with pytest.raises(InvalidArchError):
        check_flat(bad)


def test_parse_json_arg_inline_file_and_errors(tmp_path):
    assert parse_json_arg('{"a": 1}') == {"a": 1}
    path = tmp_path / "a.json"
    path.write_text('{"a": 2}')
    assert parse_json_arg(str(path)) == {"a": 2}
    assert parse_json_arg("@" + str(path)) == {"a": 2}
    with pytest.raises(InvalidArchError, match="not valid JSON"):
        parse_json_arg('{"a": 1')
    with pytest.raises(InvalidArchError, match="does not exist"):
        parse_json_arg(str(tmp_path / "missing.json"))


def test_registry_lookup_and_unknown_name_lists_choices():
    reg = Registry("widget")
    reg.register("b")(int)
    reg.register("a")(float)
    assert reg.names() == ["a", "b"]
    assert reg.get("a") is float
    with pytest.raises(ConfigError, match="unknown widget 'c'; valid choices: a, b"):
        reg.get("c")
    with pytest.raises(ValueError):
        reg.register("a")(str)
