"""Compression of trained networks (quantize, prune, distill, low-rank) and per-layer profiles."""
