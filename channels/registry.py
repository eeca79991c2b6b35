"""Build any channel block from a name and parameters (what a scenario YAML names).

``make_channel(name, **params)`` with ``name`` one of :data:`CHANNEL_NAMES`:

- ``"awgn"``: :class:`channels.flat.AWGNChannel` (``equalizer``).
- ``"rayleigh"``: :class:`channels.flat.RayleighBlockFadingChannel` (``coherence_symbols``, ``equalizer``).
- ``"rician"``: :class:`channels.flat.RicianBlockFadingChannel` (``k_factor`` linear, or
  ``k_factor_db``; ``coherence_symbols``, ``equalizer``).
- ``"tdl"`` / ``"cdl"``: :class:`channels.ofdm.TDLChannel` / :class:`channels.ofdm.CDLChannel`
  (``model``, ``delay_spread`` s, ``carrier_frequency`` Hz, ``min_speed``/``max_speed`` m/s,
  ``channel_estimation``, ``equalizer``, ``interpolation``, ``normalize_per_slot`` and the grid:
  ``num_ofdm_symbols``, ``fft_size``, ``subcarrier_spacing`` Hz, ``pilot_ofdm_symbol_indices``).
- ``"umi"`` / ``"uma"``: a :func:`channels.topology.drop_users` drop of ``num_users`` UEs from
  ``seed`` and its :class:`channels.topology.UrbanChannel` (``carrier_frequency``, ``isd``,
  ``min_bs_ut_dist``, ``indoor_probability``, ``max_speed``, ``calibration_slots`` and the OFDM
  options above). The drop is ``channel.drop`` (path loss, per-user SNR).

Every block maps ``x: [batch, num_users, num_symbols]`` complex64 and ``no`` (linear N0) to a
:class:`channels.flat.ChannelOutput`. An unknown name, an unknown parameter or a bad value raises
``ValueError`` with one line naming the field and what is allowed. Sionna is imported only when an
OFDM channel is built.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the blocks import torch (and Sionna) when built, so reading a scenario does not
    from torch import nn

__all__ = ["CHANNEL_NAMES", "DROP_STREAM", "make_channel", "channel_parameters", "channel_throughput"]

TDL_CDL_MODELS = ("A", "B", "C", "D", "E")
CHANNEL_ESTIMATIONS = ("perfect", "ls")
INTERPOLATIONS = ("nn", "lin", "lin_time_avg")
#: :func:`channels.randomness.user_generators` stream of a user drop (UMi/UMa, and placement ``drop``
#: of the simulator): one id, so both give the same drop for a seed.
DROP_STREAM = 17


def _number(field: str, value, minimum: float | None = None, strict: bool = False, integer: bool = False):
    """Check a numeric parameter; returns it as float (or int). ``strict``: ``value > minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{field} must be {kind}; got {value!r}")
    if integer and int(value) != value:
        raise ValueError(f"{field} must be an integer; got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{field} must be {'>' if strict else '>='} {minimum}; got {value!r}")
    return int(value) if integer else float(value)


def _choice(field: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _optional(field: str, value, **checks):
    return None if value is None else _number(field, value, **checks)


def _awgn(*, equalizer: str = "zf") -> nn.Module:
    from channels.flat import EQUALIZERS, AWGNChannel

    _choice("equalizer", equalizer, EQUALIZERS)
    return AWGNChannel(equalizer=equalizer)


def _rayleigh(*, coherence_symbols: int | None = None, equalizer: str = "zf") -> nn.Module:
    from channels.flat import EQUALIZERS, RayleighBlockFadingChannel

    _choice("equalizer", equalizer, EQUALIZERS)
    coherence = _optional("coherence_symbols", coherence_symbols, minimum=1, integer=True)
    return RayleighBlockFadingChannel(coherence_symbols=coherence, equalizer=equalizer)


def _rician(*, k_factor: float | None = None, k_factor_db: float | None = None, coherence_symbols: int | None = None, equalizer: str = "zf") -> nn.Module:
    from channels.flat import EQUALIZERS, RicianBlockFadingChannel

    _choice("equalizer", equalizer, EQUALIZERS)
    if k_factor is not None and k_factor_db is not None:
        raise ValueError("k_factor: give either k_factor (linear) or k_factor_db, not both")
    if k_factor_db is not None:
        k = 10.0 ** (_number("k_factor_db", k_factor_db) / 10.0)
    else:
        k = _number("k_factor", 1.0 if k_factor is None else k_factor, minimum=0.0)
    coherence = _optional("coherence_symbols", coherence_symbols, minimum=1, integer=True)
    return RicianBlockFadingChannel(k_factor=k, coherence_symbols=coherence, equalizer=equalizer)


def _ofdm_options(channel_estimation, equalizer, interpolation, num_ofdm_symbols, fft_size, subcarrier_spacing, pilot_ofdm_symbol_indices) -> dict:
    """Validated options shared by the OFDM channels; builds the resource grid."""
    from channels.flat import EQUALIZERS
    from channels.ofdm import make_resource_grid

    _choice("channel_estimation", channel_estimation, CHANNEL_ESTIMATIONS)
    _choice("equalizer", equalizer, EQUALIZERS)
    _choice("interpolation", interpolation, INTERPOLATIONS)
    num_ofdm_symbols = _number("num_ofdm_symbols", num_ofdm_symbols, minimum=1, integer=True)
    fft_size = _number("fft_size", fft_size, minimum=1, integer=True)
    subcarrier_spacing = _number("subcarrier_spacing", subcarrier_spacing, minimum=0.0, strict=True)
    if isinstance(pilot_ofdm_symbol_indices, (str, bytes)) or not isinstance(pilot_ofdm_symbol_indices, Sequence):
        raise ValueError(f"pilot_ofdm_symbol_indices must be a list of OFDM symbol indices; got {pilot_ofdm_symbol_indices!r}")
    pilots = [_number("pilot_ofdm_symbol_indices", i, minimum=0, integer=True) for i in pilot_ofdm_symbol_indices]
    if any(i >= num_ofdm_symbols for i in pilots):
        raise ValueError(f"pilot_ofdm_symbol_indices must lie in 0..{num_ofdm_symbols - 1}; got {pilots}")
    if channel_estimation == "ls" and not pilots:
        raise ValueError("pilot_ofdm_symbol_indices must not be empty with channel_estimation='ls'")
    grid = make_resource_grid(num_ofdm_symbols, fft_size, subcarrier_spacing, pilots)
    return dict(resource_grid=grid, channel_estimation=channel_estimation, equalizer=equalizer, interpolation=interpolation)


def _speeds(min_speed, max_speed) -> tuple[float, float | None]:
    low = _number("min_speed", min_speed, minimum=0.0)
    high = _optional("max_speed", max_speed, minimum=low)
    return low, high


def _tdl_or_cdl(kind: str):
    def build(
        *,
        model: str = "A" if kind == "tdl" else "C",
        delay_spread: float = 100e-9,
        carrier_frequency: float = 3.5e9,
        min_speed: float = 0.0,
        max_speed: float | None = None,
        channel_estimation: str = "perfect",
        equalizer: str = "zf",
        interpolation: str = "lin",
        normalize_per_slot: bool = False,
        num_ofdm_symbols: int = 14,
        fft_size: int = 72,
        subcarrier_spacing: float = 30e3,
        pilot_ofdm_symbol_indices: Sequence[int] = (2, 11),
    ) -> nn.Module:
        from channels.ofdm import CDLChannel, TDLChannel

        _choice("model", model, TDL_CDL_MODELS)
        delay_spread = _number("delay_spread", delay_spread, minimum=0.0, strict=True)
        carrier_frequency = _number("carrier_frequency", carrier_frequency, minimum=0.0, strict=True)
        low, high = _speeds(min_speed, max_speed)
        if not isinstance(normalize_per_slot, bool):
            raise ValueError(f"normalize_per_slot must be true or false; got {normalize_per_slot!r}")
        options = _ofdm_options(channel_estimation, equalizer, interpolation, num_ofdm_symbols, fft_size, subcarrier_spacing, pilot_ofdm_symbol_indices)
        cls = TDLChannel if kind == "tdl" else CDLChannel
        return cls(model, delay_spread, carrier_frequency, low, high, normalize_per_slot=normalize_per_slot, **options)

    return build


def _urban(scenario: str):
    def build(
        *,
        num_users: int = 8,
        seed: int = 0,
        carrier_frequency: float = 3.5e9,
        isd: float | None = None,
        min_bs_ut_dist: float | None = None,
        indoor_probability: float | None = None,
        max_speed: float = 0.0,
        calibration_slots: int = 32,
        channel_estimation: str = "perfect",
        equalizer: str = "zf",
        interpolation: str = "lin",
        num_ofdm_symbols: int = 14,
        fft_size: int = 72,
        subcarrier_spacing: float = 30e3,
        pilot_ofdm_symbol_indices: Sequence[int] = (2, 11),
    ) -> nn.Module:
        from channels.randomness import user_generators
        from channels.topology import UrbanChannel, drop_users

        num_users = _number("num_users", num_users, minimum=1, integer=True)
        seed = _number("seed", seed, minimum=0, integer=True)
        carrier_frequency = _number("carrier_frequency", carrier_frequency, minimum=0.0, strict=True)
        isd = _optional("isd", isd, minimum=0.0, strict=True)
        min_bs_ut_dist = _optional("min_bs_ut_dist", min_bs_ut_dist, minimum=0.0)
        indoor_probability = _optional("indoor_probability", indoor_probability, minimum=0.0)
        if indoor_probability is not None and indoor_probability > 1:
            raise ValueError(f"indoor_probability must lie in [0, 1]; got {indoor_probability}")
        max_speed = _number("max_speed", max_speed, minimum=0.0)
        calibration_slots = _number("calibration_slots", calibration_slots, minimum=1, integer=True)
        options = _ofdm_options(channel_estimation, equalizer, interpolation, num_ofdm_symbols, fft_size, subcarrier_spacing, pilot_ofdm_symbol_indices)
        drop_stream, calibration_stream = user_generators(seed, 2, stream_id=DROP_STREAM)
        drop = drop_users(
            scenario,
            num_users,
            generator=drop_stream,
            carrier_frequency=carrier_frequency,
            isd=isd,
            min_bs_ut_dist=min_bs_ut_dist,
            indoor_probability=indoor_probability,
            max_speed=max_speed,
        )
        return UrbanChannel(drop, calibration_slots=calibration_slots, generator=calibration_stream, **options)

    return build


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "awgn": _awgn,
    "rayleigh": _rayleigh,
    "rician": _rician,
    "tdl": _tdl_or_cdl("tdl"),
    "cdl": _tdl_or_cdl("cdl"),
    "umi": _urban("umi"),
    "uma": _urban("uma"),
}
CHANNEL_NAMES = tuple(_BUILDERS)


def channel_parameters(name: str) -> dict:
    """Parameters that :func:`make_channel` accepts for ``name``, with their defaults."""
    if name not in _BUILDERS:
        raise ValueError(f"channel must be one of {', '.join(CHANNEL_NAMES)}; got {name!r}")
    signature = inspect.signature(_BUILDERS[name])
    return {key: p.default for key, p in signature.parameters.items()}


def make_channel(name: str, **params) -> nn.Module:
    """Channel block ``name`` built with ``params`` (see the module docstring for each name).

    Raises:
        ValueError: unknown name, unknown parameter, or a parameter out of range / of wrong type;
            the message is one line naming the field.
    """
    if not isinstance(name, str) or name.lower() not in _BUILDERS:
        raise ValueError(f"channel must be one of {', '.join(CHANNEL_NAMES)}; got {name!r}")
    name = name.lower()
    allowed = channel_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for channel {name!r}; allowed: {', '.join(allowed) or 'none'}")
    try:
        return _BUILDERS[name](**params)
    except TypeError as error:  # e.g. a string where Sionna expects a number
        raise ValueError(f"bad parameter for channel {name!r}: {error}") from None


def channel_throughput(name: str, num_users: int = 8, num_symbols: int = 4096, repeats: int = 5, batch: int = 4,
                       snr_db: float = 10.0, **params) -> float:
    """Complex symbols per second through channel ``name`` (forward only, ``torch.inference_mode``).

    Args:
        name: a :func:`make_channel` name ("awgn", "rayleigh", "tdl", ...); ``params``: its parameters.
        num_users, num_symbols, batch: input ``[batch, num_users, num_symbols]`` of unit-power symbols.
        repeats: timed forward passes after one warm-up pass.
        snr_db: Es/N0 in dB.

    Returns:
        ``batch * num_users * num_symbols * repeats / seconds`` (symbols/s, all users together).
    """
    import logging
    import time

    import torch

    from channels.conventions import snr_db_to_no

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if name in ("umi", "uma"):
        params.setdefault("num_users", num_users)  # the drop must hold every user
    channel = make_channel(name, **params)
    generator = torch.Generator().manual_seed(0)
    x = torch.polar(torch.ones(batch, num_users, num_symbols), 2 * math.pi * torch.rand(batch, num_users, num_symbols, generator=generator))
    no = snr_db_to_no(snr_db)
    with torch.inference_mode():
        channel(x, no, stream=generator)
        start = time.perf_counter()
        for _ in range(repeats):
            channel(x, no, stream=generator)
        elapsed = time.perf_counter() - start
    rate = batch * num_users * num_symbols * repeats / elapsed
    logging.getLogger(__name__).info("channel %s: %.3g symbols/s (%d users)", name, rate, num_users)
    return rate
