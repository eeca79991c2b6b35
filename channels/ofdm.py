"""Frequency-selective channels over an OFDM resource grid: 3GPP TDL and CDL (TR 38.901), and the
machinery that UMi/UMa (:mod:`channels.topology`) reuse.

Every block follows the contract of :mod:`channels.flat`: ``x: [batch, num_users, num_symbols]``
complex64 in, :class:`~channels.flat.ChannelOutput` out. Inside, user ``u``'s stream of symbols is
cut into slots of ``resource_grid.num_data_symbols`` symbols (the last one zero-padded), each slot
is mapped onto the data resource elements (REs) of one Sionna ``ResourceGrid`` with its pilots
(``ResourceGridMapper``), one channel realisation is drawn per slot and user
(``GenerateOFDMChannel``) and applied per RE (``ApplyOFDMChannel``), noise ``CN(0, no)`` is added
per RE, and the receiver equalises with

- ``channel_estimation="perfect"``: the true channel, one tap per RE (ZF or MMSE), or
- ``channel_estimation="ls"``: Sionna's ``LSChannelEstimator`` on the pilots (interpolated) and
  ``LMMSEEqualizer`` (which accounts for the estimation error).

The data REs are then read back in mapping order to ``[batch, num_users, num_symbols]``.

Conventions: ``Es = 1`` per data RE (pilots are unit-energy too), ``no`` = complex noise power N0
per RE (linear), so ``no`` means Es/N0 per RE. TDL/CDL power-delay profiles carry unit total power
(Sionna normalises them), so ``E|h|^2 = 1`` over realisations. ``normalize_per_slot=True`` uses
Sionna's ``normalize_channel`` instead, which forces every slot's average RE energy to exactly 1 and
thereby removes slot-level fading: off by default.

Users are independent receivers (SISO per user): Sionna's TDL/CDL models are single-link, so the
users (and slots) go into Sionna's batch dimension, ``batch * num_users * num_slots``.

Randomness (see :mod:`channels.randomness`): Sionna's models draw from
``sionna.phy.config.torch_rng``. With ``stream=None`` they use Sionna's global generator; with one
generator it is swapped in for the duration of the draw; with a list of per-user generators the
model is called once per user with that user's generator swapped in, so user ``u``'s fading and
noise come only from ``stream[u]``. The channel is drawn before the noise. Gradients flow to ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from channels.conventions import CHANNEL_DEVICE, sionna_on_cpu
from channels.flat import EQUALIZERS, ChannelOutput, expand_noise
from channels.randomness import Stream, complex_normal_per_user

__all__ = [
    "TDL_MODELS",
    "CDL_MODELS",
    "CHANNEL_ESTIMATIONS",
    "sionna_generator",
    "make_resource_grid",
    "OFDMChannel",
    "DelayLineChannel",
    "TDLChannel",
    "CDLChannel",
]

#: Seed of the pilot symbols of every resource grid (the same pilots in every process).
PILOT_SEED = 20240


TDL_MODELS = ("A", "B", "C", "D", "E")
CDL_MODELS = ("A", "B", "C", "D", "E")
CHANNEL_ESTIMATIONS = ("perfect", "ls")
INTERPOLATIONS = ("nn", "lin", "lin_time_avg")
NOISE_FLOOR = 1e-10  # linear N0 the LS/LMMSE receiver assumes at least


@contextmanager
def sionna_generator(generator: torch.Generator | None, device: str) -> Iterator[None]:
    """Make Sionna's blocks on ``device`` draw from ``generator`` inside the ``with`` block.

    Sionna's channel models read ``sionna.phy.config.torch_rng(device)`` at every draw; this swaps
    the generator held there and restores it afterwards. ``None`` leaves Sionna's own generator.
    Not thread-safe (Sionna's config is global).
    """
    if generator is None:
        yield
        return
    from sionna.phy import config

    rngs = config._torch_rngs  # Sionna keeps one generator per device name here.
    previous = rngs.get(device)
    rngs[device] = generator
    try:
        yield
    finally:
        if previous is None:
            rngs.pop(device, None)
        else:
            rngs[device] = previous


def make_resource_grid(
    num_ofdm_symbols: int = 14,
    fft_size: int = 72,
    subcarrier_spacing: float = 30e3,
    pilot_ofdm_symbol_indices: Sequence[int] = (2, 11),
    num_guard_carriers: tuple[int, int] = (0, 0),
    dc_null: bool = False,
):
    """One slot as a Sionna ``ResourceGrid`` for one single-stream transmitter.

    Args:
        num_ofdm_symbols: OFDM symbols per slot (14 = one 5G NR slot).
        fft_size: subcarriers (72 = 6 PRBs).
        subcarrier_spacing: Hz.
        pilot_ofdm_symbol_indices: OFDM symbols that carry pilots on every subcarrier
            ("kronecker" pattern); empty = no pilots (then only perfect CSI works).
        num_guard_carriers: nulled subcarriers (left, right).
        dc_null: null the DC subcarrier.

    Returns:
        ``sionna.phy.ofdm.ResourceGrid``; ``num_data_symbols`` data REs per slot.
    """
    from sionna.phy.ofdm import ResourceGrid

    sionna_on_cpu()
    if num_ofdm_symbols < 1 or fft_size < 1:
        raise ValueError(f"resource grid needs num_ofdm_symbols >= 1 and fft_size >= 1, got {num_ofdm_symbols}, {fft_size}")
    pilots = [int(i) for i in pilot_ofdm_symbol_indices]
    if any(i < 0 or i >= num_ofdm_symbols for i in pilots):
        raise ValueError(f"pilot_ofdm_symbol_indices must lie in 0..{num_ofdm_symbols - 1}, got {pilots}")
    # Sionna draws the Kronecker pattern's QPSK pilots from its global generator, which nothing seeds:
    # every process got other pilots, so LS-estimated links (and a test of them) differed run to run.
    with sionna_generator(torch.Generator().manual_seed(PILOT_SEED), CHANNEL_DEVICE):
        return ResourceGrid(
            num_ofdm_symbols=num_ofdm_symbols,
            fft_size=fft_size,
            subcarrier_spacing=subcarrier_spacing,
            num_tx=1,
            num_streams_per_tx=1,
            num_guard_carriers=tuple(num_guard_carriers),
            dc_null=dc_null,
            pilot_pattern="kronecker" if pilots else "empty",
            pilot_ofdm_symbol_indices=pilots if pilots else None,
        )


def _as_generator_list(stream: Stream, num_users: int) -> list[torch.Generator] | None:
    """``None``/one generator -> ``None``; a list -> checked list of ``num_users`` generators."""
    if stream is None or isinstance(stream, torch.Generator):
        return None
    stream = list(stream)
    if len(stream) != num_users:
        raise ValueError(f"got {len(stream)} generators for {num_users} users")
    return stream


class OFDMChannel(nn.Module):
    """Per-user SISO OFDM link over any Sionna channel model (base of TDL, CDL, UMi, UMa).

    Subclasses implement :meth:`draw_frequency_response`. The forward pass maps symbols to slots,
    applies the channel, adds noise and equalises (see the module docstring).

    Args:
        resource_grid: ``sionna.phy.ofdm.ResourceGrid`` with one transmitter and one stream
            (default :func:`make_resource_grid`).
        channel_estimation: ``"perfect"`` or ``"ls"`` (needs pilots).
        equalizer: ``"zf"`` (unbiased ``x_hat = x + e``) or ``"mmse"`` (``x_hat`` scaled by
            ``1 / (1 + no_eff_zf)``, minimum MSE for ``x ~ CN(0, 1)``, as in :mod:`channels.flat`).
            With LS estimation the unbiased estimate is Sionna's LMMSE equaliser output.
        interpolation: LS interpolation across the grid: ``"nn"``, ``"lin"`` or ``"lin_time_avg"``.
    """

    def __init__(self, resource_grid=None, channel_estimation: str = "perfect", equalizer: str = "zf", interpolation: str = "lin"):
        super().__init__()
        from sionna.phy.channel import ApplyOFDMChannel
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGridMapper

        sionna_on_cpu()

        if channel_estimation not in CHANNEL_ESTIMATIONS:
            raise ValueError(f"channel_estimation must be one of {', '.join(CHANNEL_ESTIMATIONS)}; got {channel_estimation!r}")
        if equalizer not in EQUALIZERS:
            raise ValueError(f"equalizer must be one of {', '.join(EQUALIZERS)}; got {equalizer!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
        self.resource_grid = make_resource_grid() if resource_grid is None else resource_grid
        rg = self.resource_grid
        if rg.num_tx != 1 or rg.num_streams_per_tx != 1:
            raise ValueError("resource_grid must have num_tx=1 and num_streams_per_tx=1 (one SISO link per user)")
        if channel_estimation == "ls" and rg.num_pilot_symbols == 0:
            raise ValueError("channel_estimation='ls' needs pilots: give pilot_ofdm_symbol_indices")
        self.channel_estimation = channel_estimation
        self.equalizer = equalizer
        self.sionna_device = rg.device
        self.num_data_symbols = int(rg.num_data_symbols)
        self.mapper = ResourceGridMapper(rg)
        self.apply_channel = ApplyOFDMChannel()
        # Data REs in mapping order: flat indices into the full [ofdm_symbol, subcarrier] grid ...
        rg_type = rg.build_type_grid()[0, 0].reshape(-1)
        self.register_buffer("data_index_full", torch.nonzero(rg_type == 0).squeeze(-1), persistent=False)
        # ... and into the grid without nulled subcarriers (the layout of LS channel estimates).
        mask = rg.pilot_pattern.mask[0, 0].reshape(-1)
        self.register_buffer("data_index_effective", torch.nonzero(mask == 0).squeeze(-1), persistent=False)
        if channel_estimation == "ls":
            self.estimator = LSChannelEstimator(rg, interpolation_type=interpolation)
            self.lmmse = LMMSEEqualizer(rg, StreamManagement(np.ones([1, 1], dtype=int), 1))

    # -- channel generation -------------------------------------------------------------------
    def draw_frequency_response(self, num_realisations: int, num_users: int) -> torch.Tensor:
        """Channel per RE for ``num_realisations`` independent slots of users ``0..num_users-1``.

        Called inside :func:`sionna_generator`; draws from Sionna's generator.

        Returns:
            ``[num_realisations, num_users, num_ofdm_symbols, fft_size]`` complex64, where the user
            axis may have size 1 (then the same law is used for every user).
        """
        raise NotImplementedError

    def draw_channel(self, batch: int, num_users: int, num_slots: int, stream: Stream) -> torch.Tensor:
        """``[batch, num_users, num_slots, num_ofdm_symbols, fft_size]`` complex64: one realisation per slot."""
        generators = _as_generator_list(stream, num_users)
        rg = self.resource_grid
        grid_shape = (rg.num_ofdm_symbols, rg.fft_size)
        if generators is None:
            with sionna_generator(stream, self.sionna_device):
                h = self.draw_frequency_response(batch * num_slots, num_users)
            h = h.expand(batch * num_slots, num_users, *grid_shape) if h.shape[1] == 1 and num_users > 1 else h
            h = h.reshape(batch, num_slots, num_users, *grid_shape).transpose(1, 2)
            return h
        per_user = []
        for user, generator in enumerate(generators):
            with sionna_generator(generator, self.sionna_device):
                h_user = self.draw_frequency_response_for_user(batch * num_slots, user, num_users)
            per_user.append(h_user.reshape(batch, num_slots, *grid_shape))
        return torch.stack(per_user, dim=1)

    def draw_frequency_response_for_user(self, num_realisations: int, user: int, num_users: int) -> torch.Tensor:
        """User ``user``'s channel alone, ``[num_realisations, num_ofdm_symbols, fft_size]`` complex64.

        Default: the model treats users alike, so draw for one user.
        """
        return self.draw_frequency_response(num_realisations, 1)[:, 0]

    # -- link -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, no: float | torch.Tensor, stream: Stream = None) -> ChannelOutput:
        """Transmit.

        Args:
            x: ``[batch, num_users, num_symbols]`` complex64, ``Es = 1`` per symbol.
            no: complex noise power ``N0`` per RE (linear): scalar, ``[num_users]`` or ``[batch, num_users]``.
            stream: random stream(s), see :mod:`channels.randomness`.

        Returns:
            :class:`ChannelOutput`, every field ``[batch, num_users, num_symbols]``: ``y`` received
            data REs, ``h`` channel at those REs as the receiver knows it (true or LS estimate),
            ``x_hat`` equalised symbols, ``no_eff`` their noise variance (float32, linear).
        """
        if x.dim() != 3 or not x.is_complex():
            raise ValueError(f"x must be complex [batch, num_users, num_symbols]; got {tuple(x.shape)} {x.dtype}")
        batch, num_users, num_symbols = x.shape
        no = expand_noise(no, batch, num_users, device=x.device)  # [batch, num_users, 1]
        rg = self.resource_grid
        data = self.num_data_symbols
        num_slots = max(1, math.ceil(num_symbols / data))
        pad = num_slots * data - num_symbols
        x_padded = nn.functional.pad(x, (0, pad)) if pad else x
        num_links = batch * num_users * num_slots
        grid = self.mapper(x_padded.to(torch.complex64).reshape(num_links, 1, 1, data))  # [links, 1, 1, T, F]

        h = self.draw_channel(batch, num_users, num_slots, stream).to(x.device)  # [B, U, S, T, F]
        h_links = h.reshape(num_links, 1, 1, 1, 1, rg.num_ofdm_symbols, rg.fft_size)
        y = self.apply_channel(grid, h_links)  # [links, 1, 1, T, F]
        noise = complex_normal_per_user((batch, num_users, num_slots, rg.num_ofdm_symbols, rg.fft_size), stream, device=x.device)
        no_links = no.reshape(batch, num_users, 1, 1, 1).expand(batch, num_users, num_slots, 1, 1)
        y = y.reshape(batch, num_users, num_slots, rg.num_ofdm_symbols, rg.fft_size) + noise * torch.sqrt(no_links)

        y_data = y.flatten(-2)[..., self.data_index_full]  # [B, U, S, D]
        if self.channel_estimation == "perfect":
            h_known = h.flatten(-2)[..., self.data_index_full]
            gain = h_known.abs() ** 2
            x_hat = y_data / h_known
            no_eff = no_links.squeeze(-1) / gain
        else:
            # A tiny floor keeps Sionna's LMMSE finite for no = 0 (the added noise stays 0).
            no_flat = no_links.reshape(num_links, 1, 1).clamp(min=NOISE_FLOOR)
            y_grid = y.reshape(num_links, 1, 1, rg.num_ofdm_symbols, rg.fft_size)
            h_hat, err_var = self.estimator(y_grid, no_flat)  # [links, 1, 1, 1, 1, T, F_eff]
            x_hat, no_eff = self.lmmse(y_grid, h_hat, err_var, no_flat)  # [links, 1, 1, D]
            h_known = h_hat.reshape(batch, num_users, num_slots, -1)[..., self.data_index_effective]
            x_hat = x_hat.reshape(batch, num_users, num_slots, data)
            no_eff = no_eff.reshape(batch, num_users, num_slots, data)
        if self.equalizer == "mmse":
            x_hat = x_hat / (1 + no_eff)
            no_eff = no_eff / (1 + no_eff)

        def unslot(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, num_users, num_slots * data)[..., :num_symbols]

        return ChannelOutput(
            y=unslot(y_data),
            h=unslot(h_known).to(torch.complex64),
            x_hat=unslot(x_hat).to(torch.complex64),
            no_eff=unslot(no_eff).to(torch.float32),
        )


def _check_choice(field: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _check_positive(field: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{field} must be a positive number; got {value!r}")


def single_antenna(carrier_frequency: float):
    """One vertically polarised omnidirectional antenna (``PanelArray`` 1x1): SISO, no array gain."""
    from sionna.phy.channel.tr38901 import PanelArray

    return PanelArray(
        num_rows_per_panel=1,
        num_cols_per_panel=1,
        polarization="single",
        polarization_type="V",
        antenna_pattern="omni",
        carrier_frequency=carrier_frequency,
    )


class DelayLineChannel(OFDMChannel):
    """3GPP TR 38.901 delay-line channel over OFDM: ``family`` ``"tdl"`` (tapped delay line,
    ``sionna.phy.channel.tr38901.TDL``) or ``"cdl"`` (clustered delay line, ``...CDL``: downlink, one
    omnidirectional antenna at the BS and at each UE). One Sionna ``ChannelModel`` per link gives the
    frequency response of every slot (``GenerateOFDMChannel``).

    Args:
        family: ``"tdl"`` or ``"cdl"``.
        model: ``"A"``..``"E"`` (A-C NLoS, D-E LoS).
        delay_spread: RMS delay spread in seconds (e.g. 100e-9 "nominal", 300e-9 "long").
        carrier_frequency: Hz (sets the Doppler for a speed).
        min_speed, max_speed: UT speed range in m/s (uniform per link; ``max_speed=None`` -> ``min_speed``).
            The channel evolves over the slot's OFDM symbols; 0 = static within a slot.
        resource_grid, channel_estimation, equalizer, interpolation: see :class:`OFDMChannel`.
        normalize_per_slot: force unit energy per slot (removes slot-level fading), default off.
    """

    FAMILIES = {"tdl": TDL_MODELS, "cdl": CDL_MODELS}

    def __init__(
        self,
        family: str,
        model: str,
        delay_spread: float = 100e-9,
        carrier_frequency: float = 3.5e9,
        min_speed: float = 0.0,
        max_speed: float | None = None,
        resource_grid=None,
        channel_estimation: str = "perfect",
        equalizer: str = "zf",
        interpolation: str = "lin",
        normalize_per_slot: bool = False,
    ):
        from sionna.phy.channel import GenerateOFDMChannel
        from sionna.phy.channel.tr38901 import CDL, TDL

        _check_choice("family", family, tuple(self.FAMILIES))
        _check_choice("model", model, self.FAMILIES[family])
        _check_positive("delay_spread", delay_spread)
        _check_positive("carrier_frequency", carrier_frequency)
        if min_speed < 0 or (max_speed is not None and max_speed < min_speed):
            raise ValueError(f"speed must satisfy 0 <= min_speed <= max_speed; got {min_speed}, {max_speed}")
        super().__init__(resource_grid=resource_grid, channel_estimation=channel_estimation, equalizer=equalizer,
                         interpolation=interpolation)
        self.family, self.model = family, model
        if family == "tdl":
            self.channel_model = TDL(model, delay_spread=delay_spread, carrier_frequency=carrier_frequency,
                                     min_speed=min_speed, max_speed=max_speed)
        else:
            self.channel_model = CDL(model, delay_spread=delay_spread, carrier_frequency=carrier_frequency,
                                     ut_array=single_antenna(carrier_frequency), bs_array=single_antenna(carrier_frequency),
                                     direction="downlink", min_speed=min_speed,
                                     max_speed=min_speed if max_speed is None else max_speed)
        self.normalize_per_slot = bool(normalize_per_slot)
        self.generate = GenerateOFDMChannel(self.channel_model, self.resource_grid,
                                            normalize_channel=self.normalize_per_slot)

    def draw_frequency_response(self, num_realisations, num_users):
        h = self.generate(num_realisations * num_users)  # [n*U, 1, 1, 1, 1, T, F]
        return h.reshape(num_realisations, num_users, *h.shape[-2:]).to(torch.complex64)


class TDLChannel(DelayLineChannel):
    """:class:`DelayLineChannel` of the TDL family (default model A)."""

    def __init__(self, model: str = "A", *args, **kwargs):
        super().__init__("tdl", model, *args, **kwargs)


class CDLChannel(DelayLineChannel):
    """:class:`DelayLineChannel` of the CDL family (default model C)."""

    def __init__(self, model: str = "C", *args, **kwargs):
        super().__init__("cdl", model, *args, **kwargs)
