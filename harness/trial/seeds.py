"""One seed per source of randomness, derived from a base seed.

This is the only place seeds are derived. Each source gets its own seed so a
study can vary exactly one of them while the others stay fixed; each one can
also be overridden alone.
"""

from __future__ import annotations

import dataclasses
import hashlib

# Every algorithmic source of randomness a trial has. The names are a contract:
# study conditions, flags and records all use them.
SOURCES = ("init", "shuffle", "dropout", "augment", "split")

# Stateless TF random ops take int32/int64 seed pairs; staying below 2**31
# keeps seeds valid in either dtype and readable in records.
_SEED_LIMIT = 2**31
# The largest base seed (--seed, harness.study's seed): records hold it as a JSON integer, which readers hold
# in 64 bits.
MAX_BASE_SEED = 2**63 - 1


def derive_seed(base_seed: int, source: str) -> int:
    """A seed for `source` that depends only on (base_seed, source).

    A hash rather than `base_seed + offset`: neighbouring base seeds must not
    share seeds across sources (seed 1's `init` is not seed 0's `shuffle`).
    """
    digest = hashlib.sha256(f"{base_seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_LIMIT


@dataclasses.dataclass(frozen=True)
class SeedSet:
    """The seed of every source of randomness for one trial."""

    init: int
    shuffle: int
    dropout: int
    augment: int
    split: int

    @classmethod
    def from_base(cls, base_seed: int, **overrides: int | None) -> SeedSet:
        """Derives every source's seed from `base_seed`; non-None overrides win."""
        unknown = set(overrides) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown seed sources: {sorted(unknown)}")
        values = {}
        for source in SOURCES:
            override = overrides.get(source)
            values[source] = derive_seed(base_seed, source) if override is None else int(override)
        for source, value in values.items():
            if not 0 <= value < _SEED_LIMIT:
                raise ValueError(f"the {source} seed must be in [0, 2**31), got {value}")
        return cls(**values)

    def replace(self, **changes: int) -> SeedSet:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
