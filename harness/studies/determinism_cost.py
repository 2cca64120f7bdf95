"""A study's cost record (COST_FILE): determinism's price measured once per study, in interleaved blocks.

A study with `control` and `kernels` (and with env:xla=1) has its cost measured by `trial/cost.py` after
its trials, in the process that ran the study, independent of `--replicas`, in COST_UNITS independent units
(each a freshly built model). The record keeps the raw block seconds of every unit; the summary turns them into
ratios with intervals over the units (`analysis/summary.cost_block`). A record of the same study,
environment, block and unit count is reused, so a resume does not measure again; a
record of another study or environment is measured over. A sharded study measures in shard 0, and
`harness.merge` carries that record to the merged directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.platform import environment
from harness.schema import COST_FILE, COST_SCHEMA
from harness.studies.conditions import CONTROL, KERNELS, XLA_ON, Condition
from harness.studies.progress import phase
from harness.studies.records import load_document, schema_errors, utc_timestamp, write_json
from harness.trial.config import COST_UNITS, TrialConfig
from harness.trial.seeds import SeedSet

# Measures the cost somewhere else (a Ray task): (config, seeds, blocks, xla) -> (measurement, bit identity there).
Measure = Callable[[TrialConfig, SeedSet, int, bool], tuple[dict[str, Any], dict[str, str]]]


def wanted(chosen: list[Condition]) -> tuple[bool, bool]:
    """(measure op determinism's cost, measure XLA's too): a study with control and kernels, or with
    control and env:xla=1, has a step ratio that only an interleaved measurement can give."""
    names = {c.name for c in chosen}
    return CONTROL in names and KERNELS in names, CONTROL in names and XLA_ON in names


def read(directory: Path) -> dict[str, Any] | None:
    """The directory's cost record, or None where it has none or one this harness cannot read (measured over)."""
    try:
        record = load_document((directory / COST_FILE).read_bytes(), str(directory / COST_FILE))
    except Exception:  # no record, or a damaged one: measured over, not trusted
        return None
    if not isinstance(record, dict) or record.get("schema") != COST_SCHEMA or schema_errors(record):
        return None
    return record


def ensure(base: TrialConfig, seeds: SeedSet, chosen: list[Condition], directory: Path, study_id: str,
           blocks: int, identity: dict[str, Any] | None = None,
           measure: Measure | None = None) -> dict[str, Any] | None:
    """The study's cost record: the directory's own where it is of this study, environment and block count
    (and has the XLA component if the study has env:xla=1), else measured now and written atomically. None
    where the study has nothing to measure or `blocks` is 0 (--cost_blocks=0). `identity`: the bit identity of
    where the trials ran, where the caller has it. `measure`: where to measure (a Ray task, where the trials
    ran; default: this process), returning the measurement and that place's bit identity."""
    ops, xla = wanted(chosen)
    if not (ops or xla) or blocks == 0:
        return None
    # The study's manifest already holds it (api.run_study): no second capture of the environment.
    identity = identity or environment.bit_identity(environment.capture())
    existing = read(directory)
    if existing and existing["study_id"] == study_id and existing["environment"] == identity \
            and existing["blocks"] == blocks and existing["units"] == COST_UNITS \
            and (not xla or "xla" in existing["components"]):
        return existing
    from harness.trial import cost

    components = " and ".join(name for name, measured_now in (("op and tf.data determinism", ops), ("XLA", xla))
                              if measured_now)
    phase(f"measuring what determinism costs ({components}; {COST_UNITS} units of {blocks} interleaved blocks a "
          "setting, --cost_blocks=0 skips it)")
    if measure is None:
        measured = cost.measure(base, seeds, blocks=blocks, xla=xla)
    else:
        measured, identity = measure(base, seeds, blocks, xla)
    record = {"schema": COST_SCHEMA, "study_id": study_id, "created_at": utc_timestamp(), "blocks": blocks,
              "units": COST_UNITS, "method": cost.METHOD, "environment": identity, **measured}
    write_json(directory / COST_FILE, record)
    return record
