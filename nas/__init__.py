"""hwnas: hardware-aware neural architecture search.

Importing this package has no side effects beyond defining names; spaces, strategies, predictors and
targets register themselves when their modules are imported (see :mod:`nas.registry`).
"""

__version__ = "0.1.0"
