"""A study's cost record: measured once, reused by a resume of the same study, measured over otherwise."""

import json

import pytest
from conftest import SMALL

from harness.schema import COST_FILE
from harness.studies import conditions, determinism_cost
from harness.studies.records import schema_errors
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet


@pytest.mark.slow
def test_the_cost_record_is_reused_by_the_same_study_and_measured_over_for_another(tmp_path):
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("control,kernels,init")
    first = determinism_cost.ensure(base, seeds, chosen, tmp_path, "study-a", 8)
    assert schema_errors(first) == [] and first["blocks"] == 8 and first["study_id"] == "study-a"
    written = (tmp_path / COST_FILE).read_bytes()
    # A resume of the same study, environment and block count: the same record, not measured again.
    assert determinism_cost.ensure(base, seeds, chosen, tmp_path, "study-a", 8) == first
    assert (tmp_path / COST_FILE).read_bytes() == written
    # Another block count, or another study in the directory: measured over.
    again = determinism_cost.ensure(base, seeds, chosen, tmp_path, "study-a", 9)
    assert again["blocks"] == 9 and again["units"] == 3
    assert [len(unit["a_seconds"]) for unit in again["components"]["op_determinism"]["units"]] == [9, 9, 9]
    # A record of one unit (harness.cost/1, before issue 43) is measured over: its interval held no unit spread.
    old = {**again, "schema": "harness.cost/1"}
    (tmp_path / COST_FILE).write_text(json.dumps(old))
    assert determinism_cost.read(tmp_path) is None
    # A damaged record is measured over, not trusted.
    (tmp_path / COST_FILE).write_text('{"schema": "harness.cost/2", "study_id": "study-a"')
    assert determinism_cost.read(tmp_path) is None
    assert determinism_cost.ensure(base, seeds, chosen, tmp_path, "study-a", 8)["blocks"] == 8
    # With env:xla=1 the XLA component joins; an older record without it is measured over.
    with_xla = conditions.parse_conditions("control,kernels,env:xla=1")
    assert "xla" in determinism_cost.ensure(base, seeds, with_xla, tmp_path, "study-a", 8)["components"]


def test_a_study_without_control_and_kernels_or_with_no_blocks_measures_nothing(tmp_path):
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    assert determinism_cost.ensure(base, seeds, conditions.parse_conditions("control,init"), tmp_path, "s", 8) is None
    assert determinism_cost.ensure(base, seeds, conditions.parse_conditions("control,kernels"), tmp_path, "s",
                                   0) is None
    assert not (tmp_path / COST_FILE).exists()
