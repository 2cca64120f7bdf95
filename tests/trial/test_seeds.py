"""Seeds: one base seed derives every source's seed; an override changes that source alone."""

import pytest

from harness.trial.seeds import SOURCES, SeedSet, derive_seed


def test_each_source_gets_its_own_stable_seed():
    seeds = SeedSet.from_base(0)
    assert seeds == SeedSet.from_base(0)
    assert len(set(seeds.as_dict().values())) == len(SOURCES)
    assert seeds.init == derive_seed(0, "init")


def test_neighbouring_base_seeds_share_no_seeds():
    values = [set(SeedSet.from_base(base).as_dict().values()) for base in range(3)]
    assert not values[0] & values[1] and not values[1] & values[2]


def test_an_override_changes_only_its_source():
    base, changed = SeedSet.from_base(7), SeedSet.from_base(7, shuffle=123)
    assert changed.shuffle == 123
    assert {k: v for k, v in changed.as_dict().items() if k != "shuffle"} == \
        {k: v for k, v in base.as_dict().items() if k != "shuffle"}


@pytest.mark.parametrize("overrides", [{"init": -1}, {"dropout": 2**31}, {"weights": 1}])
def test_bad_overrides_are_refused(overrides):
    with pytest.raises(ValueError):
        SeedSet.from_base(0, **overrides)
