"""How many architectures per second predictor-scored evolution scores on the default OFA space, beside the
once-for-all package's own evolution search; and on any other space beside the OFA space.

    python experiments/search_speed.py [--queries 50000] [--population 100] [--repeats 3] [--latency both|ridge|prior]
    python experiments/search_speed.py --against-ofa [--ofa-path DIR] [--queries 70000] [--repeats 3]
    python experiments/search_speed.py --space mobilenet [--queries 50000] [--repeats 3]
    python experiments/search_speed.py --space all          # ofa and the four block spaces, in one run

Ours: the main command's two predictors (ridge on the encoding for accuracy, ridge on cost features with a log
target for latency) fitted on 60 random subnets with made-up targets (speed does not depend on the values),
then the NSGA-II-style strategy run through ``nas.pipeline.run_strategy``, the loop the main command runs.
``--latency prior`` scores latency with the shipped ``arm_cpu`` prior instead (what ``+target=arm_cpu``
without a board uses); ``both`` (the default) times both paths.

``--against-ofa``: the peer is the original once-for-all package (PyPI ``ofa`` 0.1.0.post202307202001), its
``ofa.tutorial.EvolutionFinder.run_evolution_search`` with population 100, its MLP ``AccuracyPredictor`` with
random weights (``pretrained=False``: nothing is downloaded) and its ``FLOPsTable`` as the efficiency model
under a 600 MFLOPs constraint (the loosest its finder accepts, so it rejects the fewest candidates). The
FLOPs table would be downloaded or counted with ``thop``; here the table object is filled by its own
``build_single_lut`` at its five resolutions, with OFA's own FLOP counter (``ofa.utils.profile``) standing in
for ``thop``. torchvision and gdown, which its package imports but the search never calls, are replaced by
empty stand-in modules. Install it in a scratch place, never into the project::

    pip install --no-deps --target /tmp/ofa_peer ofa==0.1.0.post202307202001

and pass ``--ofa-path /tmp/ofa_peer`` (or set ``HWNAS_OFA_PATH``). The peer's archs are counted as they reach
its accuracy predictor (its initial population plus 100 per generation); ours scores the same number. The two
are timed alternately (peer, ours, peer, ours, ... for each latency path and repeat), each ratio from a pair
run back to back, and the medians reported. Both run single-threaded: this script sets OMP_NUM_THREADS,
MKL_NUM_THREADS and OPENBLAS_NUM_THREADS to 1 before numpy and torch load, and ``torch.set_num_threads(1)``.

Prints the rates and ratios and writes ``experiments/results/search_speed.json`` (through
``results_io.write_results``), with the 1-minute load average before and after every run: other processes on
the two cores slow every run down. The timed loop is ``run_strategy``; the arch dicts and ids of its trials
are made when they are first read, which is timed apart (``trials_made_after_s``).

``--space NAME [NAME ...]`` (any registered space, or ``all``: ofa, mobilenet, shufflenet, ghostnet, blocks)
times the same loop on each space as ``+space=NAME`` configures it (``conf/space/NAME.yaml``, with the embedded
data's shape for spaces searched through a supernet), with the OFA space always among them as the yardstick:
the spaces are timed alternately (ofa, NAME, ..., then the next repeat), each space's rate divided by the OFA
rate of the same repeat and latency path, and the medians reported. The acceptance of the block spaces is
a rate of at least ``MIN_RATIO`` (0.5) times the OFA space's. Written to
``experiments/results/search_speed_spaces.json``, so ``search_speed.json`` (the comparison with the peer,
which the docs render) keeps its layout; ``--space ofa`` alone is the default run above.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy and torch are imported (see the module docstring)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402
from results_io import write_results  # noqa: E402

from nas.objectives import Constraints, objectives_for  # noqa: E402
from nas.pipeline import make_space, run_strategy, sample_distinct  # noqa: E402
from nas.registry import SPACES, STRATEGIES  # noqa: E402
from nas.surrogate import PriorSurrogate, fit_surrogate  # noqa: E402
from search_spaces.base import SearchSpace, WeightSharingSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = "search_speed.json"
SPACES_OUT = "search_speed_spaces.json"
#: ``--space all``: the OFA space (the yardstick) and the block spaces.
ALL_SPACES = ("ofa", "mobilenet", "shufflenet", "ghostnet", "blocks")
#: The block spaces' acceptance: at least this fraction of the OFA space's rate ("within 2x").
MIN_RATIO = 0.5
#: The embedded data's shape, which the main command gives spaces searched through a supernet.
EMBEDDED_SHAPE = {"num_classes": 10, "in_channels": 1}
PEER_VERSION = "0.1.0.post202307202001"
PEER_INSTALL = f"pip install --no-deps --target /tmp/ofa_peer ofa=={PEER_VERSION}"
#: MFLOPs constraint of the peer's finder: the top of the range it accepts (150-600).
PEER_FLOPS_CONSTRAINT = 600
PATHS = {"ridge": "latency_ridge", "prior": "latency_prior"}


# ------------------------------------------------------------------------------------------------ ours
def configured_space(name: str) -> SearchSpace:
    """The space ``+space=NAME`` searches: its ``conf/space`` file, with the embedded data's shape for a space
    searched through a supernet (the tabular spaces' networks keep their own)."""
    shape = EMBEDDED_SHAPE if issubclass(SPACES.get(name), WeightSharingSpace) else {}
    return make_space(OmegaConf.load(ROOT / "conf" / "space" / f"{name}.yaml"), **shape)


def our_models(space: SearchSpace, latency: str):
    rng = np.random.default_rng(0)
    archs = sample_distinct(space, 60, rng)
    accuracy = fit_surrogate(space=space, archs=archs, values=rng.random(60), metric="accuracy", predictor="ridge",
                             features="encoding")
    if latency == "prior":
        from nas.hardware.priors import load_prior

        models = accuracy, PriorSurrogate(prior=load_prior("arm_cpu"), space=space)
    else:
        models = accuracy, fit_surrogate(space=space, archs=archs, values=rng.random(60) + 0.1,
                                         metric="latency_ms", predictor="ridge", features="cost",
                                         predictor_kwargs={"log_target": True})
    # Untimed: tables a space builds on first use (e.g. the traced per-(layer, op) kernel table) belong to the
    # setup, not to the loop's rate.
    codes = space.to_codes(archs)
    for model in models:
        model.predict_codes(codes)
    return models


def time_ours(space: SearchSpace, models, *, queries: int, population: int) -> tuple[float, float]:
    """Seconds of the search loop, and then of making all its trials (arch dicts and ids), which the loop
    leaves to whoever reads them (the main command does, for the front and results.json; the peer keeps no
    history at all)."""
    accuracy, latency = models
    strategy = STRATEGIES.get("evolution")(space=space, objectives=objectives_for("pareto"),
                                           constraints=Constraints(), seed=0, population_size=population)
    started = time.perf_counter()
    history = run_strategy(strategy, accuracy, latency, queries=queries, progress=False)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    assert len(list(history)) == queries
    return seconds, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------ the peer
class Peer:
    """The once-for-all package's evolution finder, set up once (its FLOPs table takes a few seconds)."""

    def __init__(self, ofa_path: Path, *, population: int) -> None:
        if not (ofa_path / "ofa" / "tutorial" / "evolution_finder.py").is_file():
            sys.exit(f"error: the once-for-all package is not in {ofa_path or '(no --ofa-path)'}: install it with "
                     f"`{PEER_INSTALL}` and pass --ofa-path /tmp/ofa_peer (or set HWNAS_OFA_PATH)")
        sys.path.insert(0, str(ofa_path))
        stand_ins = [name for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                                       "torchvision.datasets", "gdown", "thop") if name not in sys.modules]
        for name in stand_ins:
            sys.modules[name] = _stand_in(name)
            parent, _, child = name.rpartition(".")
            if parent in stand_ins:  # `import torchvision.transforms.functional` reads the attributes
                setattr(sys.modules[parent], child, sys.modules[name])
        try:
            from ofa.tutorial import AccuracyPredictor, EvolutionFinder, FLOPsTable
            from ofa.utils import profile

            # thop.profile(model, (x,)) -> (flops, params); OFA's own counter gives the same for its layers.
            sys.modules["thop"].profile = lambda model, inputs, verbose=False: profile(model, tuple(inputs[0].shape))
            table = FLOPsTable.__new__(FLOPsTable)  # its __init__ would download the table or write a file
            table.multiplier, table.pred_type, table.device, table.batch_size = 1.2, "flops", "cpu", 1
            table.efficiency_dict = {}
            with contextlib.redirect_stdout(io.StringIO()):
                for resolution in (160, 176, 192, 208, 224):  # the resolutions its ArchManager samples
                    table.build_single_lut(1, resolution)
        finally:
            for name in stand_ins:
                sys.modules.pop(name, None)
        torch.manual_seed(0)
        self.predictor = AccuracyPredictor(pretrained=False, device="cpu")
        self.counted = 0
        predict = self.predictor.predict_accuracy

        def counting(population_list):
            self.counted += len(population_list)
            return predict(population_list)

        self.predictor.predict_accuracy = counting
        self.table, self.finder_class, self.population = table, EvolutionFinder, population

    def generations(self, queries: int) -> int:
        return max(1, round((queries - self.population) / self.population))

    def run(self, queries: int, seed: int) -> tuple[float, int]:
        """Seconds of one ``run_evolution_search`` scoring about ``queries`` archs, and the count scored."""
        generations = self.generations(queries)
        finder = self.finder_class(constraint_type="flops", efficiency_constraint=PEER_FLOPS_CONSTRAINT,
                                   efficiency_predictor=self.table, accuracy_predictor=self.predictor,
                                   population_size=self.population, max_time_budget=generations)
        random.seed(seed)
        np.random.seed(seed)
        self.counted = 0
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            started = time.perf_counter()
            finder.run_evolution_search()
            seconds = time.perf_counter() - started
        return seconds, self.counted


def _stand_in(name: str) -> types.ModuleType:
    """An empty module whose every public attribute is a placeholder class (for base classes at import)."""
    module = types.ModuleType(name)

    def attribute(key: str):
        if key.startswith("__"):
            raise AttributeError(key)
        return type(key, (), {})

    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


# ------------------------------------------------------------------------------------------------ driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=None,
                        help="archs per run (default 50,000; 70,000 with --against-ofa, the issue's measurement)")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", choices=("both", "ridge", "prior"), default="both")
    parser.add_argument("--against-ofa", action="store_true", help="time the once-for-all package's search too")
    parser.add_argument("--ofa-path", type=Path, default=Path(os.environ.get("HWNAS_OFA_PATH", "/tmp/ofa_peer")),
                        help="directory holding the ofa package (default $HWNAS_OFA_PATH or /tmp/ofa_peer)")
    parser.add_argument("--space", "--spaces", nargs="+", default=["ofa"], metavar="NAME",
                        help=f"registered space names, or `all` ({' '.join(ALL_SPACES)}); other than ofa alone, "
                             f"each is timed beside ofa and written to experiments/results/{SPACES_OUT}")
    args = parser.parse_args()
    if args.repeats < 1 or args.population < 2 or (args.queries is not None and args.queries < args.population):
        parser.error("--repeats must be >= 1, --population >= 2 and --queries >= --population")
    names = _space_names(parser, args.space)
    if names != ["ofa"] and args.against_ofa:
        parser.error("--against-ofa compares the OFA space with the once-for-all package: drop --space (or give "
                     "--space ofa); time other spaces without --against-ofa")
    torch.set_num_threads(1)
    paths = ("ridge", "prior") if args.latency == "both" else (args.latency,)
    if names != ["ofa"]:
        time_spaces(names, paths, queries=args.queries or 50_000, population=args.population, repeats=args.repeats)
        return
    queries = args.queries or (70_000 if args.against_ofa else 50_000)
    peer = Peer(args.ofa_path, population=args.population) if args.against_ofa else None
    space = configured_space("ofa")  # width_mult 0.5, resolutions 24/28/32, 1 channel, 10 classes
    models = {path: our_models(space, path) for path in paths}
    if peer is not None:  # the count the peer scores: its first population, then one population per generation
        queries = args.population * (1 + peer.generations(queries))
    runs: dict[str, list[dict]] = {path: [] for path in paths}
    load_first = os.getloadavg()[0]
    for repeat in range(args.repeats):
        for path in paths:
            entry: dict = {"repeat": repeat}
            if peer is not None:
                before = os.getloadavg()[0]
                seconds, counted = peer.run(queries, seed=repeat)
                assert counted == queries, f"the peer scored {counted} archs, expected {queries}"
                entry["peer"] = {"seconds": round(seconds, 3), "archs": counted,
                                 "archs_per_second": round(counted / seconds),
                                 "load_average_1min": [round(before, 2), round(os.getloadavg()[0], 2)]}
            before = os.getloadavg()[0]
            seconds, trials_seconds = time_ours(space, models[path], queries=queries, population=args.population)
            entry["ours"] = {"seconds": round(seconds, 3), "archs": queries,
                             "archs_per_second": round(queries / seconds),
                             "load_average_1min": [round(before, 2), round(os.getloadavg()[0], 2)],
                             "trials_made_after_s": round(trials_seconds, 3)}
            line = f"{path:>5}: ours {entry['ours']['archs_per_second']:>7,} archs/s"
            if peer is not None:
                entry["ratio"] = round(entry["ours"]["archs_per_second"] / entry["peer"]["archs_per_second"], 2)
                line += (f"   once-for-all {entry['peer']['archs_per_second']:>7,} archs/s   "
                         f"ratio {entry['ratio']:.2f}x")
            print(f"{line}   (load {before:.2f})", flush=True)
            runs[path].append(entry)

    payload: dict = {
        "space": "ofa (width_mult 0.5, resolutions 24/28/32: the main command's default)",
        "threads": "OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)",
    }
    if peer is not None:
        payload["peer"] = {
            "package": f"ofa {PEER_VERSION} (PyPI)", "search": "ofa.tutorial.EvolutionFinder.run_evolution_search",
            "population": args.population, "accuracy_predictor": "AccuracyPredictor(pretrained=False): random weights",
            "efficiency": (f"FLOPsTable filled by its build_single_lut (resolutions 160-224, multiplier 1.2) with "
                           f"ofa.utils.profile counting FLOPs; constraint {PEER_FLOPS_CONSTRAINT} MFLOPs"),
            "stand_ins": "torchvision, gdown, thop (empty modules; thop.profile -> ofa.utils.profile)",
            "archs_counted": "archs passed to AccuracyPredictor.predict_accuracy",
        }
    print()
    for path in paths:
        entries = runs[path]
        ours = [e["ours"]["seconds"] for e in entries]
        loads = [load for e in entries for side in ("peer", "ours") if side in e
                 for load in e[side]["load_average_1min"]]
        result = {"queries": queries, "population": args.population, "repeats": args.repeats,
                  "seconds": round(statistics.median(ours), 2),
                  "trials_made_after_s": round(statistics.median(e["ours"]["trials_made_after_s"] for e in entries), 2),
                  "archs_per_second": round(queries / statistics.median(ours)),
                  "seconds_each": [round(s, 2) for s in ours],
                  "load_average_1min": [round(min(loads), 2), round(max(loads), 2)], "runs": entries}
        summary = f"{path}: ours {result['archs_per_second']:,} archs/s (median of {args.repeats})"
        if peer is not None:
            peer_seconds = statistics.median(e["peer"]["seconds"] for e in entries)
            result["peer_archs_per_second"] = round(queries / peer_seconds)
            result["ratio"] = round(statistics.median(e["ratio"] for e in entries), 2)
            summary += (f", once-for-all {result['peer_archs_per_second']:,} archs/s, ratio {result['ratio']:.2f}x "
                        f"(median of the back-to-back pairs)")
        print(summary + f"; load average {result['load_average_1min'][0]:.2f}-{result['load_average_1min'][1]:.2f}")
        payload[PATHS[path]] = result
    write_results(OUT, payload, load_before=load_first)


def _space_names(parser: argparse.ArgumentParser, given: list[str]) -> list[str]:
    """``--space`` as a list of distinct registered names, ofa first whenever other spaces are timed."""
    names: list[str] = []
    for name in given:
        for n in (ALL_SPACES if name == "all" else (name,)):
            if n not in names:
                names.append(n)
    unknown = [n for n in names if n not in SPACES]
    if unknown:
        parser.error(f"unknown space {', '.join(map(repr, unknown))}; choose from {', '.join(SPACES.names())} or all")
    missing = [n for n in names if not (ROOT / "conf" / "space" / f"{n}.yaml").is_file()]
    if missing:
        parser.error(f"no conf/space/NAME.yaml for {', '.join(missing)}: the timed space is the one +space=NAME "
                     f"configures")
    return names if names == ["ofa"] else ["ofa"] + [n for n in names if n != "ofa"]


def _describe(space: SearchSpace) -> dict:
    """The space's constructor options (where it lists them) and its number of choice labels."""
    config = getattr(space, "config", None)
    return {"config": config() if callable(config) else None, "labels": len(space.choices())}


def time_spaces(names: list[str], paths: tuple[str, ...], *, queries: int, population: int, repeats: int) -> None:
    """The loop on each space of ``names`` (ofa first), alternately, and each rate's ratio to the OFA space's."""
    spaces = {name: configured_space(name) for name in names}
    models = {(name, path): our_models(spaces[name], path) for name in names for path in paths}
    runs: dict[str, dict[str, list[dict]]] = {path: {name: [] for name in names} for path in paths}
    load_first = os.getloadavg()[0]
    for repeat in range(repeats):
        for path in paths:
            for name in names:  # alternately: a slow minute on the machine hits every space alike
                before = os.getloadavg()[0]
                seconds, trials_seconds = time_ours(spaces[name], models[name, path], queries=queries,
                                                    population=population)
                entry = {"repeat": repeat, "seconds": round(seconds, 3), "archs_per_second": round(queries / seconds),
                         "load_average_1min": [round(before, 2), round(os.getloadavg()[0], 2)],
                         "trials_made_after_s": round(trials_seconds, 3)}
                if name != "ofa":
                    ofa = runs[path]["ofa"][-1]  # the same repeat's OFA run, timed just before
                    entry["ratio_to_ofa"] = round(entry["archs_per_second"] / ofa["archs_per_second"], 3)
                runs[path][name].append(entry)
                ratio = f"   {entry['ratio_to_ofa']:.2f}x ofa" if "ratio_to_ofa" in entry else ""
                print(f"{path:>5} {name:>10}: {entry['archs_per_second']:>8,} archs/s{ratio}   (load {before:.2f})",
                      flush=True)

    payload: dict = {
        "spaces": {name: _describe(spaces[name]) for name in names},
        "how": ("each space as +space=NAME configures it (conf/space/NAME.yaml; the embedded data's shape for "
                "spaces searched through a supernet), the main command's loop (nas.pipeline.run_strategy, "
                "evolution) with ridge accuracy and latency predictors fitted on 60 random archs, or the arm_cpu "
                "prior; spaces timed alternately per repeat and latency path, ratios to the OFA run of the same "
                "repeat, medians over repeats"),
        "threads": "OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)",
        "acceptance": {"rule": f"archs/s >= {MIN_RATIO} x the OFA space's (within 2x)", "min_ratio": MIN_RATIO},
    }
    print()
    passed_all = True
    for path in paths:
        results: dict[str, dict] = {}
        for name in names:
            entries = runs[path][name]
            seconds = statistics.median(e["seconds"] for e in entries)
            loads = [load for e in entries for load in e["load_average_1min"]]
            result = {"queries": queries, "population": population, "repeats": repeats,
                      "seconds": round(seconds, 3), "archs_per_second": round(queries / seconds),
                      "trials_made_after_s": round(statistics.median(e["trials_made_after_s"] for e in entries), 3),
                      "seconds_each": [e["seconds"] for e in entries],
                      "load_average_1min": [round(min(loads), 2), round(max(loads), 2)], "runs": entries}
            line = f"{path:>5} {name:>10}: {result['archs_per_second']:>8,} archs/s (median of {repeats})"
            if name != "ofa":
                result["ratio_to_ofa"] = round(statistics.median(e["ratio_to_ofa"] for e in entries), 3)
                result["passed"] = result["ratio_to_ofa"] >= MIN_RATIO
                passed_all &= result["passed"]
                line += (f", {result['ratio_to_ofa']:.2f}x ofa's rate "
                         f"({'passes' if result['passed'] else 'FAILS'} >= {MIN_RATIO})")
            print(line)
            results[name] = result
        payload[PATHS[path]] = results
    payload["passed"] = passed_all
    path = write_results(SPACES_OUT, payload, load_before=load_first)
    print(f"\n{'every space passes' if passed_all else 'not every space passes'} (rate >= {MIN_RATIO} x ofa's); "
          f"wrote {path}")


if __name__ == "__main__":
    main()
