"""The DARTS cell space: genotype strings printed and read as DARTS does (the published DARTS_V2 included),
clear errors for genotypes outside the space, networks that build, run and export, and the relaxation
(one-hot supernet == extracted network, DARTS's top-2 derivation, PC-DARTS's partial channels)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from nas.errors import ConfigError, InvalidArchError
from nas.export import export_onnx, verify_onnx
from nas.registry import SPACES
from search_spaces.darts import (
    DARTS_V2,
    LABELS,
    PRIMITIVES,
    DartsNetwork,
    DartsSpace,
    Genotype,
    arch_of_genotype,
    parse_genotype,
)
from search_spaces.profile import count_macs, count_params
from search_spaces.relax import Gates

DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)


def small(**kw) -> DartsSpace:
    """A space whose networks run in milliseconds (3 cells: normal, reduce, reduce)."""
    options = dict(in_channels=1, channels=4, layers=3, resolution=16, search_channels=4, search_layers=3)
    return DartsSpace(**{**options, **kw})


def node_pairs(genotype: Genotype) -> dict[str, list[set]]:
    """Each node's two (op, input) pairs as a set: what a genotype means, whatever order it lists them in."""
    return {t: [set(getattr(genotype, t)[2 * k: 2 * k + 2]) for k in range(4)] for t in ("normal", "reduce")}


# ---------------------------------------------------------------------------------------------- genotypes
def test_genotype_prints_exactly_like_darts_and_parses_back():
    assert str(DARTS_V2) == DARTS_V2_TEXT
    assert parse_genotype(DARTS_V2_TEXT) == DARTS_V2
    spaced = DARTS_V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)").replace(", ", ",")
    assert parse_genotype("  " + spaced + "\n") == DARTS_V2


def test_darts_v2_round_trips_through_the_canonical_arch():
    space = DartsSpace()
    arch = space.from_public(DARTS_V2_TEXT)
    assert space.from_public(DARTS_V2) == arch and space.parse(DARTS_V2_TEXT) == arch
    assert len(arch) == len(LABELS) == 24 and space.validate(arch) == arch
    canonical = space.to_public(arch)
    # node 4 of the normal cell lists (skip, 0) after (sep, 1) in DARTS_V2: the canonical form sorts by input
    assert canonical != DARTS_V2_TEXT and parse_genotype(canonical) != DARTS_V2
    assert space.to_public(space.from_public(canonical)) == canonical
    assert node_pairs(parse_genotype(canonical)) == node_pairs(DARTS_V2)
    # the network is DARTS_V2's: the same ops on the same inputs in every cell
    ours, theirs = space.build(arch), DartsNetwork(DARTS_V2)
    for a, b in zip(ours.cells, theirs.cells):
        assert Counter(zip(a.inputs, map(repr, a.ops))) == Counter(zip(b.inputs, map(repr, b.ops)))
    assert count_params(ours) == count_params(theirs)


def test_every_public_form_reads_the_same_arch():
    space = DartsSpace()
    arch = space.sample(np.random.default_rng(0))
    genotype = space.genotype(arch)
    assert space.from_public(genotype) == arch
    assert space.from_public([list(map(list, f)) if f and isinstance(f[0], tuple) else f for f in genotype]) == arch
    assert space.from_public(genotype._asdict()) == arch
    assert space.from_public(dict(arch)) == arch
    swapped = genotype._replace(normal=[genotype.normal[k ^ 1] for k in range(8)])  # each node's pairs reversed
    assert space.from_public(swapped) == arch


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("('skip_connect', 0), ('dil_conv_3x3', 2)", "('none', 0), ('dil_conv_3x3', 2)"),
     "normal node 5 uses 'none'"),
    (lambda t: t.replace("('skip_connect', 0), ('dil_conv_3x3', 2)", "('skip_connect', 2), ('dil_conv_3x3', 2)"),
     "normal node 5 takes input 2 twice"),
    (lambda t: t.replace("('skip_connect', 0), ('dil_conv_3x3', 2)]", "]"), "normal has 6 .op, input. pairs, expected 8"),
    (lambda t: t.replace("('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2)",
                         "('max_pool_3x3', 0), ('max_pool_3x3', 2), ('skip_connect', 2)"), "reduce node 2 reads node 2"),
    (lambda t: t.replace("sep_conv_3x3", "conv_7x1_1x7", 1), "unknown op 'conv_7x1_1x7'"),
    (lambda t: t.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[4, 5]"), r"reduce_concat=\[4, 5\] is not allowed"),
    (lambda t: t[:-1], "malformed genotype"),
    (lambda t: t.replace("Genotype(", "Genome("), "not a Genotype"),
    (lambda t: "__import__('os').system('true')", "not a Genotype"),
    (lambda t: t.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=__import__('os').getcwd()"), "not a literal"),
    (lambda t: t.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', '0')", 1), "is not an .op, input. pair"),
    (lambda t: t.replace("reduce_concat=", "reduced_concat="), "unknown field 'reduced_concat'"),
    (lambda t: t.replace(", reduce_concat=[2, 3, 4, 5]", ""), r"lacks \['reduce_concat'\]"),
])
def test_genotypes_outside_the_space_are_refused_with_a_clear_message(change, message):
    with pytest.raises(InvalidArchError, match=message):
        DartsSpace().from_public(change(DARTS_V2_TEXT))


def test_other_public_objects_are_refused():
    space = DartsSpace()
    with pytest.raises(InvalidArchError, match="DARTS genotype"):
        space.from_public(42)
    with pytest.raises(InvalidArchError, match="missing labels"):
        space.from_public({"normal.node2.inputs": "0-1"})
    with pytest.raises(InvalidArchError, match="normal_concat"):
        arch_of_genotype(DARTS_V2._replace(normal_concat="2345"))


# ---------------------------------------------------------------------------------------------- the space
def test_sample_mutate_crossover_stay_in_the_space():
    space = DartsSpace()
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(20)]
    for a, b in zip(archs, archs[1:]):
        assert space.validate(a) == a
        child = space.mutate(a, rng)
        assert space.validate(child) == child != a
        assert space.validate(space.crossover(a, b, rng))
        assert space.from_public(space.to_public(a)) == a
        vec = space.encode(a).reshape(28, 8)  # one op per edge, 'none' on all but 8 edges of each cell
        assert (vec.sum(1) == 1).all() and vec[:, 1:].sum() == 16
    assert space.choices()["normal.node2.inputs"] == ("0-1",)
    assert space.choices()["reduce.node5.inputs"] == ("0-1", "0-2", "0-3", "0-4", "1-2", "1-3", "1-4", "2-3", "2-4", "3-4")
    assert SPACES.get("darts") is DartsSpace


@pytest.mark.parametrize("option, value, message", [
    ("channels", 0, "channels must be a positive integer"),
    ("layers", 2.5, "layers must be a positive integer"),
    ("stem_multiplier", -1, "stem_multiplier must be a positive integer"),
    ("auxiliary", "yes", "auxiliary must be true or false"),
    ("drop_path", 1.0, r"drop_path must be a number in \[0, 1\)"),
    ("drop_path", True, r"drop_path must be a number in \[0, 1\)"),
    ("resolution", 30, "resolution must be a multiple of 4"),
    ("search_channels", 0, "search_channels must be a positive integer"),
    ("search_layers", "5", "search_layers must be a positive integer"),
    ("num_classes", None, "num_classes must be a positive integer"),
])
def test_bad_space_options_are_refused(option, value, message):
    with pytest.raises(ConfigError, match=f"darts: {message}"):
        DartsSpace(**{option: value})
    assert DartsSpace(search_channels=None, search_layers=None).search_layers == 8


def test_networks_build_and_run_on_digit_sized_inputs(one_torch_thread):
    for space in (DartsSpace(in_channels=1, resolution=28), DartsSpace()):
        arch = space.from_public(DARTS_V2)
        net = space.build(arch).eval()
        with torch.no_grad():
            assert net(torch.randn(2, *space.input_shape(arch))).shape == (2, 10)
    space = small(auxiliary=True, drop_path=0.2, num_classes=7)
    net = space.build(space.sample(np.random.default_rng(2))).train()
    logits, aux = net.forward_with_aux(torch.randn(2, 1, 16, 16))
    assert logits.shape == aux.shape == (2, 7)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 7)  # forward: the logits only, even with the head
    assert small().build(small().sample(np.random.default_rng(2))).forward_with_aux(torch.randn(1, 1, 16, 16))[1] is None


def test_kernel_list_agrees_with_the_built_network():
    from search_spaces.kernels import kernels

    space = small()
    rng = np.random.default_rng(3)
    for arch in [space.from_public(DARTS_V2)] + [space.sample(rng) for _ in range(4)]:
        net, shape = space.build(arch), space.input_shape(arch)
        ks = kernels(space, arch)
        assert sum(k.flops for k in ks) == count_macs(net, shape)
        assert sum(k.params for k in ks) == count_params(net)


def test_onnx_export_matches_pytorch(tmp_path):
    space = small()
    arch = space.from_public(DARTS_V2)
    model = space.build(arch).eval()
    path = export_onnx(model, space.input_shape(arch), tmp_path / "darts.onnx")
    assert verify_onnx(path, model, space.input_shape(arch)) < 1e-4


# ---------------------------------------------------------------------------------------------- relaxation
def softmax_gates(space: DartsSpace, seed: int) -> Gates:
    generator = torch.Generator().manual_seed(seed)
    return Gates(weights=[torch.softmax(torch.randn(len(d.options), generator=generator), 0)
                          for d in space.decisions()])


def test_decisions_are_the_28_cell_edges():
    decisions = DartsSpace().decisions()
    assert len(decisions) == 28 and all(d.options == PRIMITIVES for d in decisions)
    assert [d.name for d in decisions[:3]] == ["normal.node2.in0", "normal.node2.in1", "normal.node3.in0"]
    assert decisions[14].name == "reduce.node2.in0" and decisions[-1].name == "reduce.node5.in4"


def test_one_hot_supernet_computes_the_extracted_network(one_torch_thread):
    space = small()
    supernet = space.relax().train()
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        for seed in range(3):  # BatchNorm running statistics away from their initial values
            supernet(x, softmax_gates(space, seed))
    supernet.eval()
    rng = np.random.default_rng(4)
    for arch in [space.from_public(DARTS_V2)] + [space.sample(rng) for _ in range(3)]:
        net = supernet.extract(arch).eval()
        with torch.no_grad():
            expected = supernet(x, supernet.gates_of(arch))
            got = net(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert space.arch_of(space.selection_of(arch)) == arch


def test_softmax_gates_train_weights_and_architecture(one_torch_thread):
    space = small()
    supernet = space.relax()
    alphas = [torch.zeros(8, requires_grad=True) for _ in space.decisions()]
    gates = Gates(weights=[torch.softmax(a, 0) for a in alphas], aux_skip=0.5)
    loss = supernet(torch.randn(4, 1, 16, 16), gates).logsumexp(1).mean()
    loss.backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in alphas)
    assert sum(float(a.grad.abs().sum()) for a in alphas) > 0
    active = [int(i) for i in np.random.default_rng(5).integers(1, 8, size=28)]  # one op per edge (GDAS)
    out = supernet(torch.randn(2, 1, 16, 16), Gates(weights=gates.weights, active=active))
    assert out.shape == (2, 10)


def test_derive_keeps_each_nodes_two_strongest_edges():
    space = DartsSpace()
    probs = [np.full(8, 1 / 8) for _ in space.decisions()]
    names = [d.name for d in space.decisions()]

    def put(name: str, op: str, p: float, none: float = 0.0) -> None:
        vec = np.full(8, (1 - p - none) / 6)
        vec[PRIMITIVES.index(op)], vec[0] = p, none
        probs[names.index(name)] = vec

    # node 3 of the normal cell: 'none' is the most probable op of edge 0 but does not count; edges 0 and 2 win
    put("normal.node3.in0", "dil_conv_5x5", 0.3, none=0.6)
    put("normal.node3.in1", "avg_pool_3x3", 0.2)
    put("normal.node3.in2", "sep_conv_5x5", 0.5)
    put("reduce.node5.in3", "skip_connect", 0.9)
    put("reduce.node5.in1", "max_pool_3x3", 0.8)
    arch = space.derive(probs)
    genotype = space.genotype(arch)
    assert genotype.normal[2:4] == [("dil_conv_5x5", 0), ("sep_conv_5x5", 2)]
    assert genotype.reduce[6:8] == [("max_pool_3x3", 1), ("skip_connect", 3)]
    # uniform probabilities elsewhere: ties go to the lower inputs, the op to the first one other than none
    assert genotype.normal[4:6] == [("max_pool_3x3", 0), ("max_pool_3x3", 1)]


def test_arch_of_needs_two_edges_per_node():
    space = DartsSpace()
    selection = space.selection_of(space.from_public(DARTS_V2))
    assert sum(s != 0 for s in selection) == 16
    three = list(selection)
    three[space.decisions().index(next(d for d in space.decisions() if d.name == "normal.node4.in3"))] = 4
    with pytest.raises(InvalidArchError, match="normal.node4 has 3 incoming edges"):
        space.arch_of(three)
    with pytest.raises(InvalidArchError, match="28"):
        space.arch_of(selection[:27])


@pytest.mark.parametrize("k", [2, 4])
def test_pc_darts_partial_channels_and_edge_normalisation(k):
    # Two torch threads, not one: on an AMD EPYC (AVX2) machine torch 2.13.0+cpu corrupts the heap in this
    # backward pass at one thread with k=4 ("free(): invalid next size", the process aborts), also on commits
    # before the channel search; at two threads it passes. Not yet narrowed to one op (not max-pool, depthwise
    # or dilated convs alone on 2 channels); the session note of issue 11 records it.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_partial_channels(k)
    finally:
        torch.set_num_threads(threads)


def _check_partial_channels(k: int) -> None:
    space = small(search_channels=8)
    supernet = space.relax(partial_channels=k)
    groups = supernet.edge_groups()
    assert groups == {f"{t}.node{j}": j for t in ("normal", "reduce") for j in (2, 3, 4, 5)}
    gates = softmax_gates(space, 0)
    betas = {node: torch.randn(n, requires_grad=True) for node, n in groups.items()}
    gates.edge_weights = {node: torch.softmax(b, 0) for node, b in betas.items()}
    out = supernet(torch.randn(4, 1, 16, 16), gates)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(b.grad is not None for b in betas.values())
    edge = supernet.cells[0].edges[0]
    assert edge.mix.candidates[4][1].in_channels == 8 // k  # the mixed op sees 1/k of the channels
    with pytest.raises(ConfigError, match="extract needs partial_channels=1"):
        supernet.extract(space.from_public(DARTS_V2))
    assert space.relax().edge_groups() == {}


def test_partial_channels_must_divide_the_search_channels():
    with pytest.raises(ConfigError, match="partial_channels=3 must divide search_channels=4"):
        small().relax(partial_channels=3)
    with pytest.raises(ConfigError, match="partial_channels must be a positive integer"):
        small().relax(partial_channels=0)
