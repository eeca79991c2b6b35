"""UMi/UMa drops and their OFDM channel (channels/topology.py)."""

from __future__ import annotations

import math

import pytest
import torch

from channels.ofdm import make_resource_grid
from channels.randomness import user_generators
from channels.topology import UrbanChannel, average_snr_db, drop_users, noise_power_dbm


@pytest.mark.parametrize("scenario", ["umi", "uma"])
def test_drop_is_plausible_and_deterministic(scenario):
    drop = drop_users(scenario, 12, generator=torch.Generator().manual_seed(4))
    assert drop.ut_loc.shape == (12, 3) and drop.pathloss_db.shape == (12,)
    assert torch.all(drop.gain_db < -60) and torch.all(drop.gain_db > -170), drop.gain_db
    assert torch.all(drop.distance_3d_m >= drop.min_distance_m - 1e-3)
    assert torch.all(drop.distance_2d_m <= drop.isd_m / math.sqrt(3) + 1e-3)
    again = drop_users(scenario, 12, generator=torch.Generator().manual_seed(4))
    assert torch.equal(drop.ut_loc, again.ut_loc) and torch.equal(drop.pathloss_db, again.pathloss_db)
    other = drop_users(scenario, 12, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(drop.ut_loc, other.ut_loc)
    # Path loss grows with distance on average (LoS/NLoS and O2I make it noisy).
    assert torch.corrcoef(torch.stack([drop.distance_3d_m.log(), drop.pathloss_db]))[0, 1] > 0


def test_snr_helpers():
    assert abs(noise_power_dbm(20e6, 9.0) - (-174 + 10 * math.log10(20e6) + 9)) < 1e-9
    snr = average_snr_db(torch.tensor([-100.0, -120.0]), tx_power_dbm=30.0, noise_figure_db=7.0, bandwidth_hz=10e6)
    assert torch.allclose(snr, torch.tensor([30 - 100 + 174 - 70 - 7.0, 30 - 120 + 174 - 70 - 7.0]), atol=1e-4)
    drop = drop_users("umi", 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(drop.snr_db(30.0, 7.0, 10e6), average_snr_db(drop.gain_db, 30.0, 7.0, 10e6))
    with pytest.raises(ValueError, match="scenario"):
        drop_users("rma", 2)
    with pytest.raises(ValueError, match="num_users"):
        drop_users("umi", 0)


def test_urban_channel_identity_power_and_streams():
    drop = drop_users("umi", 3, generator=torch.Generator().manual_seed(1))
    grid = make_resource_grid(num_ofdm_symbols=4, fft_size=12, pilot_ofdm_symbol_indices=(1,))
    channel = UrbanChannel(drop, calibration_slots=16, generator=torch.Generator().manual_seed(2), resource_grid=grid)
    x = torch.polar(torch.ones(8, 3, 60), torch.rand(8, 3, 60, generator=torch.Generator().manual_seed(3)) * 6.28)
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(4))
    assert torch.allclose(out.x_hat, x, atol=1e-4)
    # Path loss is removed: the small-scale gain is ~1 (loose: few slots, per-slot LSPs).
    assert 0.2 < out.h.abs().pow(2).mean().item() < 5.0
    a = channel(x, 0.1, stream=user_generators(7, 3))
    b = channel(x, 0.1, stream=user_generators(7, 3))
    assert torch.equal(a.y, b.y)
    with pytest.raises(ValueError, match="users"):
        channel(x[:, :2], 0.1)
