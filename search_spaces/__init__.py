"""Search spaces: the :class:`SearchSpace` interface and the built-in spaces (looked up by registry name)."""

from search_spaces.base import SearchSpace, Supernet, WeightSharingSpace

__all__ = ["SearchSpace", "Supernet", "WeightSharingSpace"]
