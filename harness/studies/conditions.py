"""Study conditions: what each of a study's N repeats varies, and nothing else.

The names are a contract: records, summaries and the CI gate key on them.
A condition turns (base config, base seed, repeat) into one trial's config,
seeds and process environment.
"""

from __future__ import annotations

import dataclasses
import re

from harness.errors import UsageError
from harness.trial.config import TrialConfig
from harness.trial.seeds import SOURCES, SeedSet, derive_seed

SEED_CONDITIONS = SOURCES  # init, shuffle, dropout, augment, split: that one seed varies.
# The names other modules compare records with.
CONTROL, KERNELS, ALL = "control", "kernels", "all"
# Control's seeds and config, trained to an epoch, checkpointed, and finished by a fresh process (trial/resume.py).
RESUME = "resume"
# The variant whose step ratio to control is measured interleaved in-process (studies/determinism_cost.py).
XLA_ON = "env:xla=1"

# Environment variants run with determinism on and every seed fixed, and are
# judged against `control`: same bits or not. Each maps a value to what it sets.
ENV_VARIANTS = {
    "threads": "intra- and inter-op thread pools of this size (e.g. env:threads=1)",
    "onednn": "TF_ENABLE_ONEDNN_OPTS=0|1: oneDNN kernels off or on (CPU)",
    "xla": "train step compiled with XLA (jit_compile) when 1",
    "load": "every core kept busy by other processes while the trial runs, when 1",
}


@dataclasses.dataclass(frozen=True)
class Condition:
    name: str
    varies: str  # For people: what differs across the repeats.
    determinism: bool
    varied_sources: tuple[str, ...] = ()
    flips_a_bit: bool = False
    # Each repeat adds the train step's sums over the batch in another order (config.reduction_order).
    reorders_sums: bool = False
    config_changes: tuple[tuple[str, object], ...] = ()
    env_vars: tuple[tuple[str, str], ...] = ()
    # Other processes keep every core busy while the trial runs (harness/studies/background_load.py).
    background_load: bool = False
    # Each trial stops at the end of an epoch (--resume_epoch, default the middle one), checkpoints its whole
    # training state, and a fresh process restored from the checkpoint finishes it.
    resumes: bool = False

    @property
    def is_env_variant(self) -> bool:
        return self.name.startswith("env:")

    @property
    def needs_own_process(self) -> bool:
        """Thread pools and environment variables are fixed when a process starts."""
        return bool(self.env_vars) or any(name.endswith("_threads") for name, _ in self.config_changes)

    @property
    def seeds_fixed(self) -> bool:
        """Every repeat has control's seeds and weights: its bits can be compared with control's."""
        return not self.varied_sources and not self.flips_a_bit and not self.reorders_sums

    @property
    def expects_identical_repeats(self) -> bool:
        """Determinism on and nothing varied: every repeat must give the same bits."""
        return self.determinism and self.seeds_fixed

    def trial(self, base: TrialConfig, base_seed: int, seeds: SeedSet, repeat: int,
              flippable: list[int]) -> tuple[TrialConfig, SeedSet]:
        """The config and seeds of this condition's repeat number `repeat`.

        `flippable` lists the flat indices of the nonzero initial weights: a
        zero (a bias) with its lowest bit set is a denormal that CPUs flush
        to zero, which would make the flip a no-op.
        """
        # Varied seeds are derived from (base seed, source, repeat), so repeat r
        # of `init` and repeat r of `all` share their init seed.
        varied = {s: derive_seed(base_seed, f"{s}#{repeat}") for s in self.varied_sources}
        changes = dict(self.config_changes, determinism=self.determinism)
        # --resume_epoch is the `resume` condition's alone: every other condition trains uninterrupted.
        changes["resume_epoch"] = (base.resume_epoch or base.epochs // 2) if self.resumes else 0
        if self.resumes and not changes["resume_epoch"]:
            raise UsageError("the `resume` condition stops training at the end of an epoch before the last; it needs "
                             f"--epochs of at least 2, got {base.epochs}.")
        if self.flips_a_bit:
            changes["flip_bit"] = flippable[derive_seed(base_seed, f"bit#{repeat}") % len(flippable)]
        if self.reorders_sums:
            changes["reduction_order"] = derive_seed(base_seed, f"order#{repeat}")
        return base.replace(**changes), seeds.replace(**varied)


# The one table of the named conditions, in the order tables show them.
NAMED_CONDITIONS = {c.name: c for c in (
    Condition(CONTROL, "nothing", determinism=True),
    Condition(KERNELS, "nothing (op determinism off)", determinism=False),
    *(Condition(source, f"{source} seed", determinism=True, varied_sources=(source,)) for source in SEED_CONDITIONS),
    Condition(ALL, "every seed (op determinism off)", determinism=False, varied_sources=SOURCES),
    Condition("bit", "which weight gets its lowest bit flipped", determinism=True, flips_a_bit=True),
    # GPU-style nondeterminism on any hardware: the same terms summed in another order (docs/reproducibility.md).
    Condition("order", "the order of the batch's terms in every sum", determinism=True, reorders_sums=True),
    Condition(RESUME, "nothing: stopped at an epoch, checkpointed, finished in a fresh process", determinism=True,
              resumes=True),
)}
CONDITIONS = tuple(NAMED_CONDITIONS)
# `resume` is asked for by name: each of its trials trains about 1.5 times control's steps, traced after the
# checkpoint, and starts a second process (docs/reproducibility.md).
DEFAULT_CONDITIONS = (*(name for name in CONDITIONS if name != RESUME), "env:threads=1", "env:onednn=0", XLA_ON,
                      "env:load=1")


def default_conditions(config: TrialConfig) -> list[Condition]:
    """Every condition that can show something for this config, on this machine.

    `augment` varies nothing without augmentation, nor `split` without a
    validation share; a model its own Keras fit trains has no `env:xla=1`.
    Environment variants that need a fresh process are left out when the
    model or data was handed over in Python (another process cannot see it).
    """
    from harness.platform.environment import onednn_enabled
    from harness.trial.train import random_layer_sources_of
    from harness.trial.user_code import is_in_process

    names = list(DEFAULT_CONDITIONS)
    if not onednn_enabled():
        # TensorFlow leaves oneDNN off by default on this CPU (no AVX-512 VNNI/BF16, AVX-VNNI or AMX):
        # turning it off again would compare control with itself; turning it on is the other setting.
        names[names.index("env:onednn=0")] = "env:onednn=1"
    if not config.augment and "augment" not in random_layer_sources_of(config):
        names.remove("augment")  # no augmentation of the pipeline, and no augmentation layer in the model
    if config.validation_fraction == 0:
        names.remove("split")
    if config.is_user_model:
        # A Keras model draws its random masks by position: reordering the batch would move them
        # (keras_model.build refuses it). `order` is for the built-in models, or asked for by name.
        names.remove("order")
    if config.trainer == "keras_fit":
        # Its own fit compiles as the model's compile() says (jit_compile): the harness loop's XLA is no setting
        # of it (TrialConfig refuses --xla with it).
        names.remove(XLA_ON)
    if is_in_process(config.model) or is_in_process(config.dataset):
        names = [name for name in names if not condition(name).needs_own_process]
    return [condition(name) for name in names]


def parse_conditions(text: str) -> list[Condition]:
    """Parses `--conditions=control,init,env:threads=1,...`; one sentence on bad input."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError("--conditions is empty; name at least one condition.")
    if len(set(names)) != len(names):
        raise UsageError(f"--conditions names a condition twice: {text}.")
    return [condition(name) for name in names]


def condition(name: str) -> Condition:
    """A named condition from the table, or an environment variant `env:NAME=VALUE`."""
    if name in NAMED_CONDITIONS:
        return NAMED_CONDITIONS[name]
    if name.startswith("env:"):
        return _env_variant(name)
    raise UsageError(
        f"unknown condition {name!r}; choose from {', '.join(CONDITIONS)} or env:NAME=VALUE "
        f"with NAME one of {', '.join(ENV_VARIANTS)}.")


def _env_variant(name: str) -> Condition:
    match = re.fullmatch(r"env:([a-z]+)=([0-9]+)", name)
    if not match or match.group(1) not in ENV_VARIANTS:
        raise UsageError(f"bad environment variant {name!r}; use env:NAME=VALUE with NAME one of "
                         f"{', '.join(ENV_VARIANTS)} and a whole-number VALUE.")
    key, value = match.group(1), int(match.group(2))
    if key == "threads":
        if value < 1:
            raise UsageError(f"{name}: the thread count must be at least 1.")
        return Condition(name, f"{value} intra/inter-op thread(s)", True,
                         config_changes=(("intra_op_threads", value), ("inter_op_threads", value)))
    if value not in (0, 1):
        raise UsageError(f"{name}: the value must be 0 or 1.")
    if key == "load":
        return Condition(name, "every core busy with other work" if value else "no other work", True,
                         background_load=bool(value))
    if key == "onednn":
        return Condition(name, f"oneDNN {'on' if value else 'off'}", True,
                         env_vars=(("TF_ENABLE_ONEDNN_OPTS", str(value)),))
    return Condition(name, f"XLA {'on' if value else 'off'}", True, config_changes=(("xla", bool(value)),))
