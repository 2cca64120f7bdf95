"""Comparing configurations (`harness.compare_configs`) over paired seeds."""

import json

import pytest
from conftest import SCORING_FLAGS, run_program

from harness.studies.records import read_records, schema_errors


@pytest.mark.slow
def test_compare_configs_finds_no_difference_between_twins_and_detects_a_far_off_learning_rate(tmp_path):
    result = run_program("harness.compare_configs", "--config=A:", "--config=B:",
                         "--config=slow:learning_rate=1e-6", "--seeds=8", *SCORING_FLAGS,
                         f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "compare.json").read_text())
    assert schema_errors(document) == []
    pairs = {(p["a"], p["b"]): p for p in document["pairs"]}
    assert not pairs["A", "B"]["detected"] and "no detectable difference" in pairs["A", "B"]["sentence"]
    assert pairs["A", "slow"]["detected"] and pairs["A", "slow"]["p_a_beats_b"] > 0.9
    assert "A is reliably better than slow" in pairs["A", "slow"]["sentence"]
    # Paired seeds: every configuration ran the same 8 seed sets.
    records = read_records(tmp_path / "trials.jsonl")
    seeds_by_config = {}
    for record in records:
        seeds_by_config.setdefault(record["config"]["learning_rate"], set()).add(json.dumps(record["seeds"]))
    assert len(seeds_by_config) == 2 and len(set(map(frozenset, seeds_by_config.values()))) == 1
    assert "no detectable difference" in result.stdout
