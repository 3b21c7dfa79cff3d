"""The request cache: keys, the SQLite store and its three modes, and the cached boundaries."""

from synth_opt.cache.boundaries import CachedContainer, CachedProposer
from synth_opt.cache.keys import cache_key, normalize_request
from synth_opt.cache.store import BOUNDARIES, CacheStore

__all__ = ["BOUNDARIES", "CacheStore", "CachedContainer", "CachedProposer", "cache_key", "normalize_request"]
