"""3GPP UMi / UMa single-sector drops (TR 38.901): user positions, path loss, per-user SNR, and the
OFDM channel seen by the dropped users.

A :class:`Drop` places ``num_users`` UEs in one 120-degree sector of a BS at the origin
(``sionna.phy.channel.gen_single_sector_topology``) and samples the large-scale gain of each link
from Sionna's UMi/UMa model: path loss (with O2I loss for indoor UEs) and shadow fading, in dB.
:meth:`Drop.snr_db` turns BS transmit power, UE noise figure and bandwidth into the per-user
average receive SNR (Es/N0 per RE, dB).

:class:`UrbanChannel` is the contract block (:class:`channels.ofdm.OFDMChannel`) for the drop:
small-scale fading from the same UMi/UMa model (clusters, delays, LoS/NLoS, K-factor, Doppler,
one omnidirectional antenna at each end) with path loss and shadow fading **removed** and each
user's channel scaled so that ``E|h|^2 = 1`` (a per-user calibration over
``calibration_slots`` realisations, made once per drop). ``no`` therefore keeps meaning the
receive Es/N0 per RE; pass ``snr_db_to_no(drop.snr_db(...))`` as ``no`` ([num_users]) to apply
the drop's large-scale gains. Each slot draws fresh small-scale fading and large-scale parameters
(delay spread, K-factor, LoS state) for the fixed user positions.

Randomness: the drop draws from the ``generator`` it is given; the channel follows
:mod:`channels.randomness`. With a per-user generator list each user's channel is drawn as a
one-user topology with its own generator (so adding a user changes no one else's draws, but
Sionna's inter-user correlation of large-scale parameters is then absent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from channels.conventions import sionna_on_cpu
from channels.ofdm import OFDMChannel, _check_positive, single_antenna, sionna_generator

__all__ = [
    "SCENARIOS",
    "Drop",
    "drop_users",
    "noise_power_dbm",
    "average_snr_db",
    "UrbanChannel",
]

SCENARIOS = ("umi", "uma")
THERMAL_NOISE_DBM_PER_HZ = -174.0


def noise_power_dbm(bandwidth_hz: float, noise_figure_db: float) -> float:
    """Receiver noise power in dBm: ``-174 dBm/Hz + 10 log10(bandwidth) + noise figure``."""
    _check_positive("bandwidth_hz", bandwidth_hz)
    return THERMAL_NOISE_DBM_PER_HZ + 10.0 * math.log10(bandwidth_hz) + noise_figure_db


def average_snr_db(
    gain_db: torch.Tensor | float,
    tx_power_dbm: float = 35.0,
    noise_figure_db: float = 9.0,
    bandwidth_hz: float = 20e6,
) -> torch.Tensor:
    """Average receive SNR (Es/N0, dB) of a link with large-scale gain ``gain_db``.

    The transmit power is spread evenly over ``bandwidth_hz`` (the noise bandwidth), so the SNR
    per RE equals the SNR over the band: ``tx_power_dbm + gain_db - noise_power_dbm``.

    Args:
        gain_db: large-scale channel gain in dB (negative: ``-path loss + shadow fading``), any shape.
        tx_power_dbm: BS transmit power in dBm (TR 38.901 calibration: 35 dBm UMi, 46 dBm UMa at 20 MHz).
        noise_figure_db: UE noise figure in dB.
        bandwidth_hz: occupied bandwidth in Hz.

    Returns:
        float32 tensor of ``gain_db``'s shape, in dB.
    """
    gain_db = torch.as_tensor(gain_db, dtype=torch.float32)
    return tx_power_dbm + gain_db - noise_power_dbm(bandwidth_hz, noise_figure_db)


@dataclass
class Drop:
    """One single-sector drop of ``num_users`` UEs. Tensors are float32 unless stated.

    Attributes:
        scenario: ``"umi"`` or ``"uma"``.
        carrier_frequency: Hz.
        ut_loc: ``[num_users, 3]`` UE positions in m (BS at ``bs_loc``).
        bs_loc: ``[3]`` BS position in m (origin, at the BS height).
        ut_orientations, ut_velocities: ``[num_users, 3]`` (radian, m/s).
        bs_orientation: ``[3]`` radian.
        indoor: ``[num_users]`` bool.
        distance_2d_m, distance_3d_m: ``[num_users]`` BS-UE distances in m.
        pathloss_db: ``[num_users]`` path loss in dB (positive), including O2I loss for indoor UEs.
        shadow_fading_db: ``[num_users]`` shadow fading in dB.
        cell_radius_m: ``isd / 2``, the largest 2D distance of the sector's inscribed circle;
            UEs lie within ``isd / sqrt(3)`` (the sector's far corner).
        isd_m, min_distance_m: inter-site distance and minimum BS-UE distance (m).
    """

    scenario: str
    carrier_frequency: float
    ut_loc: torch.Tensor
    bs_loc: torch.Tensor
    ut_orientations: torch.Tensor
    bs_orientation: torch.Tensor
    ut_velocities: torch.Tensor
    indoor: torch.Tensor
    distance_2d_m: torch.Tensor
    distance_3d_m: torch.Tensor
    pathloss_db: torch.Tensor
    shadow_fading_db: torch.Tensor
    isd_m: float
    min_distance_m: float

    @property
    def num_users(self) -> int:
        return int(self.ut_loc.shape[0])

    @property
    def gain_db(self) -> torch.Tensor:
        """``[num_users]`` average large-scale channel gain in dB: ``-pathloss_db + shadow_fading_db``."""
        return -self.pathloss_db + self.shadow_fading_db

    def snr_db(self, tx_power_dbm: float = 35.0, noise_figure_db: float = 9.0, bandwidth_hz: float = 20e6) -> torch.Tensor:
        """``[num_users]`` average receive SNR in dB, see :func:`average_snr_db`."""
        return average_snr_db(self.gain_db, tx_power_dbm, noise_figure_db, bandwidth_hz)

    def topology(self, num_realisations: int, users: slice | list[int] | None = None) -> tuple[torch.Tensor, ...]:
        """The drop as Sionna ``set_topology`` arguments, repeated ``num_realisations`` times.

        Returns:
            ``(ut_loc, bs_loc, ut_orientations, bs_orientations, ut_velocities, in_state)`` with
            a leading batch axis of size ``num_realisations`` (UE axis restricted to ``users``).
        """
        users = slice(None) if users is None else users
        n = num_realisations

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(0).expand(n, *t.shape).contiguous()

        return (
            rep(self.ut_loc[users]),
            rep(self.bs_loc.unsqueeze(0)),
            rep(self.ut_orientations[users]),
            rep(self.bs_orientation.unsqueeze(0)),
            rep(self.ut_velocities[users]),
            rep(self.indoor[users]),
        )


def _system_level_model(scenario: str, carrier_frequency: float, large_scale: bool, o2i_model: str = "low"):
    """Sionna UMi/UMa model, downlink, one omnidirectional antenna per side."""
    from sionna.phy.channel.tr38901 import UMa, UMi

    sionna_on_cpu()
    cls = UMi if scenario == "umi" else UMa
    return cls(
        carrier_frequency=carrier_frequency,
        o2i_model=o2i_model,
        ut_array=single_antenna(carrier_frequency),
        bs_array=single_antenna(carrier_frequency),
        direction="downlink",
        enable_pathloss=large_scale,
        enable_shadow_fading=large_scale,
    )


def drop_users(
    scenario: str = "umi",
    num_users: int = 8,
    generator: torch.Generator | None = None,
    carrier_frequency: float = 3.5e9,
    isd: float | None = None,
    min_bs_ut_dist: float | None = None,
    indoor_probability: float | None = None,
    max_speed: float = 0.0,
    o2i_model: str = "low",
) -> Drop:
    """Drop ``num_users`` UEs in one sector and sample their path loss and shadow fading.

    Args:
        scenario: ``"umi"`` (ISD 200 m, BS 10 m high) or ``"uma"`` (ISD 500 m, BS 25 m high).
        num_users: UEs to drop (>= 1).
        generator: random stream of the drop (``None``: Sionna's global generator).
        carrier_frequency: Hz.
        isd, min_bs_ut_dist, indoor_probability: override TR 38.901 defaults (m, m, probability).
        max_speed: UE speeds drawn uniformly in ``[0, max_speed]`` m/s.
        o2i_model: outdoor-to-indoor loss, ``"low"`` or ``"high"``.

    Returns:
        :class:`Drop`; deterministic for a given generator state.
    """
    from sionna.phy.channel import gen_single_sector_topology

    config = sionna_on_cpu()
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    if not isinstance(num_users, int) or num_users < 1:
        raise ValueError(f"num_users must be an integer >= 1; got {num_users!r}")
    _check_positive("carrier_frequency", carrier_frequency)
    if o2i_model not in ("low", "high"):
        raise ValueError(f"o2i_model must be one of low, high; got {o2i_model!r}")
    if indoor_probability is not None and not 0.0 <= indoor_probability <= 1.0:
        raise ValueError(f"indoor_probability must lie in [0, 1]; got {indoor_probability}")
    if max_speed < 0:
        raise ValueError(f"max_speed must be >= 0; got {max_speed}")
    device = config.device
    with sionna_generator(generator, device):
        ut_loc, bs_loc, ut_orient, bs_orient, ut_vel, in_state = gen_single_sector_topology(
            1,
            num_users,
            scenario,
            min_bs_ut_dist=min_bs_ut_dist,
            isd=isd,
            indoor_probability=indoor_probability,
            min_ut_velocity=0.0,
            max_ut_velocity=float(max_speed),
        )
        model = _system_level_model(scenario, carrier_frequency, large_scale=True, o2i_model=o2i_model)
        model.set_topology(ut_loc, bs_loc, ut_orient, bs_orient, ut_vel, in_state)
        lsp = model.sample_lsp()
    scenario_defaults = {"umi": (200.0, 10.0), "uma": (500.0, 35.0)}[scenario]
    offset = ut_loc[0] - bs_loc[0]
    return Drop(
        scenario=scenario,
        carrier_frequency=float(carrier_frequency),
        ut_loc=ut_loc[0].float(),
        bs_loc=bs_loc[0, 0].float(),
        ut_orientations=ut_orient[0].float(),
        bs_orientation=bs_orient[0, 0].float(),
        ut_velocities=ut_vel[0].float(),
        indoor=in_state[0].bool(),
        distance_2d_m=offset[:, :2].norm(dim=-1).float(),
        distance_3d_m=offset.norm(dim=-1).float(),
        pathloss_db=lsp.pathloss[0, 0].float(),
        shadow_fading_db=(10.0 * torch.log10(lsp.sf[0, 0])).float(),
        isd_m=float(isd if isd is not None else scenario_defaults[0]),
        min_distance_m=float(min_bs_ut_dist if min_bs_ut_dist is not None else scenario_defaults[1]),
    )


class UrbanChannel(OFDMChannel):
    """Small-scale UMi/UMa fading of a :class:`Drop` over OFDM, ``E|h|^2 = 1`` per user.

    Path loss and shadow fading are left out of ``h`` (they are in ``drop.gain_db``); each user's
    channel is divided by its average power measured over ``calibration_slots`` realisations
    (antenna polarisation mismatch and LoS make it differ from 1 per user). ``x`` must have
    ``num_users == drop.num_users``.

    Args:
        drop: the users' positions (:func:`drop_users`).
        calibration_slots: realisations for the per-user power calibration (drawn once, from
            ``generator``).
        generator: stream for the calibration (``None``: Sionna's global generator).
        resource_grid, channel_estimation, equalizer, interpolation: see :class:`channels.ofdm.OFDMChannel`.
    """

    def __init__(
        self,
        drop: Drop,
        calibration_slots: int = 32,
        generator: torch.Generator | None = None,
        resource_grid=None,
        channel_estimation: str = "perfect",
        equalizer: str = "zf",
        interpolation: str = "lin",
    ):
        super().__init__(resource_grid=resource_grid, channel_estimation=channel_estimation, equalizer=equalizer, interpolation=interpolation)
        from sionna.phy.channel import GenerateOFDMChannel

        if calibration_slots < 1:
            raise ValueError(f"calibration_slots must be >= 1; got {calibration_slots}")
        self.drop = drop
        self.model = _system_level_model(drop.scenario, drop.carrier_frequency, large_scale=False)
        self.generate = GenerateOFDMChannel(self.model, self.resource_grid, normalize_channel=False)
        self.register_buffer("user_power", torch.ones(drop.num_users), persistent=False)
        with sionna_generator(generator, self.sionna_device):
            h = self.draw_frequency_response(calibration_slots, drop.num_users)
        self.user_power = (h.abs() ** 2).mean(dim=(0, 2, 3))

    def _generate(self, num_realisations: int, users) -> torch.Tensor:
        """``[num_realisations, len(users), T, F]`` complex64 for the drop's ``users`` (unnormalised)."""
        self.model.reset_topology()
        self.model.set_topology(*self.drop.topology(num_realisations, users))
        h = self.generate(num_realisations)  # [n, users, 1, 1, 1, T, F]
        return h[:, :, 0, 0, 0].to(torch.complex64)

    def draw_frequency_response(self, num_realisations, num_users):
        if num_users != self.drop.num_users:
            raise ValueError(f"x has {num_users} users but the drop has {self.drop.num_users}")
        h = self._generate(num_realisations, slice(None))
        return h / torch.sqrt(self.user_power).reshape(1, -1, 1, 1)

    def draw_frequency_response_for_user(self, num_realisations, user, num_users):
        if num_users != self.drop.num_users:
            raise ValueError(f"x has {num_users} users but the drop has {self.drop.num_users}")
        h = self._generate(num_realisations, [user])[:, 0]
        return h / torch.sqrt(self.user_power[user])
