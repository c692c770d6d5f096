"""Predictors of architecture metrics (latency, accuracy), saved as JSON + npz.

Each predictor registers under its name when its module is imported; :mod:`nas.registry` imports the
built-in modules on the first lookup (so :func:`predictors.base.load_predictor` finds every saved type).
"""
