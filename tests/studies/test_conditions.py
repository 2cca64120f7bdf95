"""Conditions: each varies exactly what it names, and nothing else."""

import pytest
from conftest import plan_conditions

from harness.errors import UsageError
from harness.studies import conditions
from harness.trial.seeds import SOURCES


def test_each_condition_varies_exactly_what_it_names():
    base, seeds, specs = plan_conditions("control,kernels,init,shuffle,dropout,augment,split,all,bit,order",
                                         repeats=3)
    by = {name: [s for s in specs if s.condition == name] for name in conditions.CONDITIONS}
    for spec in by["control"]:
        assert spec.seeds == seeds and spec.config == base
    for spec in by["kernels"]:
        assert spec.seeds == seeds and spec.config == base.replace(determinism=False)
    for source in SOURCES:
        varied = [s.seeds for s in by[source]]
        assert len({getattr(v, source) for v in varied}) == 3
        assert all(v.replace(**{source: getattr(seeds, source)}) == seeds for v in varied)
    assert all(s.config.determinism is False for s in by["all"])
    assert all(s.seeds.init != seeds.init and s.seeds.shuffle != seeds.shuffle for s in by["all"])
    flips = [s.config.flip_bit for s in by["bit"]]
    assert len(set(flips)) == 3 and all(f >= 0 for f in flips)
    assert all(s.seeds == seeds for s in by["bit"])
    orders = [s.config.reduction_order for s in by["order"]]
    assert len(set(orders)) == 3 and all(o >= 0 for o in orders)
    assert all(s.seeds == seeds and s.config == base.replace(reduction_order=s.config.reduction_order)
               for s in by["order"])
    assert all(s.config.reduction_order == -1 for name in by if name != "order" for s in by[name])
    # Repeats are the outer loop, so conditions interleave.
    assert [s.condition for s in specs[:3]] == ["control", "kernels", "init"]
    assert len({s.key for s in specs}) == len(specs)


def test_order_is_left_out_of_a_keras_models_default_conditions(user_files):
    from conftest import user_config

    names = [c.name for c in conditions.default_conditions(user_config(user_files))]
    assert "order" not in names and "bit" in names


def test_xla_is_left_out_of_the_default_conditions_of_a_model_its_own_fit_trains(user_files):
    """Under --trainer=keras_fit XLA is what the model's compile() says (a config refuses env:xla=1's --xla): the
    default study of docs/your-own-model.md's keras_fit command was refused before any trial."""
    from conftest import user_config

    assert conditions.XLA_ON in [c.name for c in conditions.default_conditions(user_config(user_files))]
    names = [c.name for c in conditions.default_conditions(user_config(user_files, trainer="keras_fit"))]
    assert conditions.XLA_ON not in names and {"control", "kernels", "env:threads=1", "env:load=1"} <= set(names)


def test_bit_flips_only_nonzero_initial_weights():
    _, _, specs = plan_conditions("bit", repeats=20)
    # Biases start at zero; the MLP's first 128 weights (dense1/bias) are never picked.
    assert all(not 0 <= s.config.flip_bit < 128 for s in specs)


def test_environment_variants():
    threads, onednn, xla = conditions.parse_conditions("env:threads=1,env:onednn=0,env:xla=1")
    assert dict(threads.config_changes) == {"intra_op_threads": 1, "inter_op_threads": 1}
    assert dict(onednn.env_vars) == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert dict(xla.config_changes) == {"xla": True}
    assert all(c.determinism and c.seeds_fixed for c in (threads, onednn, xla))
    for bad in ("env:threads=0", "env:onednn=2", "env:nothing=1", "env:threads", "bogus", ""):
        with pytest.raises(UsageError):
            conditions.parse_conditions(bad)


def test_the_default_onednn_condition_is_the_setting_this_cpu_does_not_run_by_default():
    """TensorFlow leaves oneDNN off by default on an AVX2-only CPU: there the default study turns it on
    (env:onednn=1), where env:onednn=0 would compare control with itself."""
    from harness.platform.environment import onednn_enabled
    from harness.trial.config import load_benchmark

    names = [c.name for c in conditions.default_conditions(load_benchmark("digits_mlp"))]
    assert [name for name in names if name.startswith("env:onednn=")] == [
        "env:onednn=0" if onednn_enabled() else "env:onednn=1"]


def test_resume_stops_at_the_middle_epoch_or_resume_epoch_and_no_other_condition_resumes(small_config):
    from harness.trial.seeds import SeedSet

    seeds = SeedSet.from_base(0)
    base = small_config.replace(epochs=5)
    assert conditions.condition("resume").trial(base, 0, seeds, 0, [])[0].resume_epoch == 2
    given = base.replace(resume_epoch=4)  # --resume_epoch=4
    assert conditions.condition("resume").trial(given, 0, seeds, 0, [])[0].resume_epoch == 4
    # The resumed run's seeds are control's: its bits are compared with control's.
    assert conditions.condition("resume").trial(given, 0, seeds, 1, [])[1] == seeds
    assert conditions.condition("resume").seeds_fixed
    assert conditions.condition("control").trial(given, 0, seeds, 0, [])[0].resume_epoch == 0
    assert "resume" not in conditions.DEFAULT_CONDITIONS  # asked for by name (its cost: docs/reproducibility.md)
    with pytest.raises(UsageError, match=r"^the `resume` condition stops training at the end of an epoch before the "
                                         r"last; it needs --epochs of at least 2, got 1\.$"):
        conditions.condition("resume").trial(base.replace(epochs=1), 0, seeds, 0, [])
