"""One-shot (differentiable) search: the cost a hardware-aware search penalises (:mod:`.cost`), the bilevel
architecture gradient (:mod:`.bilevel`), training of the derived network (:mod:`.retrain`) and the run
(:mod:`.run`). The strategy itself is :mod:`nas.strategies.darts`; the relaxed spaces are
:mod:`search_spaces.relax`."""
