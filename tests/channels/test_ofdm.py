"""OFDM channels (channels/ofdm.py): TDL/CDL over a resource grid, perfect CSI and LS + LMMSE."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from channels.conventions import snr_db_to_no
from channels.ofdm import CDLChannel, TDLChannel, make_resource_grid, sionna_generator
from channels.randomness import user_generators


def unit_symbols(batch, users, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.polar(torch.ones(batch, users, n), 2 * math.pi * torch.rand(batch, users, n, generator=g))


def small_grid(**kw):
    args = dict(num_ofdm_symbols=14, fft_size=24, subcarrier_spacing=30e3, pilot_ofdm_symbol_indices=(2, 11))
    args.update(kw)
    return make_resource_grid(**args)


@pytest.mark.parametrize("model", ["A", "B", "C", "D", "E"])
def test_tdl_noiseless_perfect_csi_is_identity(model):
    channel = TDLChannel(model, resource_grid=small_grid(), max_speed=30.0)
    x = unit_symbols(2, 3, 700)  # 240 data REs per slot: 3 slots, the last one padded
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(0))
    for t in (out.y, out.h, out.x_hat, out.no_eff):
        assert t.shape == x.shape
    assert torch.allclose(out.x_hat, x, atol=1e-4)
    assert torch.allclose(out.y, out.h * x, atol=1e-5)


def test_cdl_noiseless_perfect_csi_is_identity_mmse():
    channel = CDLChannel("B", resource_grid=small_grid(), equalizer="mmse")
    x = unit_symbols(2, 2, 300)
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(0))
    assert torch.allclose(out.x_hat, x, atol=1e-4)


WIDE = dict(num_ofdm_symbols=1, fft_size=64, subcarrier_spacing=480e3, pilot_ofdm_symbol_indices=())


@pytest.mark.parametrize("cls,model,slots", [(TDLChannel, "A", 8000), (TDLChannel, "C", 8000), (CDLChannel, "D", 2000)])
def test_unit_average_channel_gain(cls, model, slots):
    # Wide band: each slot averages many resolved taps, so the mean converges fast (std < 0.7%).
    channel = cls(model, delay_spread=300e-9, resource_grid=make_resource_grid(**WIDE))
    h = channel.draw_channel(slots, 1, 1, torch.Generator().manual_seed(0))
    assert abs(h.abs().pow(2).mean().item() - 1.0) < 0.02


def test_ls_lmmse_mse_small_and_decreasing():
    channel = TDLChannel("C", delay_spread=100e-9, resource_grid=small_grid(), channel_estimation="ls")
    x = unit_symbols(4, 2, 240 * 4)
    mses = []
    for snr_db in (0.0, 10.0, 20.0, 30.0):
        out = channel(x, snr_db_to_no(snr_db), stream=torch.Generator().manual_seed(1))
        mses.append((out.x_hat - x).abs().pow(2).mean().item())
        # no_eff is the receiver's own estimate of that error.
        assert 0.3 < out.no_eff.mean().item() / mses[-1] < 3.0
    assert mses[-1] < 0.05
    assert all(a > b for a, b in zip(mses, mses[1:])), mses


def test_perfect_csi_noise_variance_matches_no_eff():
    channel = TDLChannel("A", resource_grid=small_grid())
    x = unit_symbols(4, 2, 960)
    out = channel(x, 0.1, stream=torch.Generator().manual_seed(2))
    error = (out.x_hat - x).abs().pow(2) / out.no_eff
    assert abs(error.mean().item() - 1.0) < 0.1


def test_gradients_reach_input_tdl():
    for estimation in ("perfect", "ls"):
        channel = TDLChannel("A", resource_grid=small_grid(), channel_estimation=estimation)
        x = unit_symbols(2, 2, 300).requires_grad_(True)
        out = channel(x, 0.05, stream=torch.Generator().manual_seed(0))
        (out.x_hat.abs() ** 2).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_seed_same_output_and_per_user_streams():
    channel = TDLChannel("B", resource_grid=small_grid(), max_speed=10.0)
    x = unit_symbols(2, 4, 300)
    a = channel(x, 0.1, stream=torch.Generator().manual_seed(3))
    b = channel(x, 0.1, stream=torch.Generator().manual_seed(3))
    assert torch.equal(a.y, b.y) and torch.equal(a.h, b.h)
    few = channel(x[:, :3], 0.1, stream=user_generators(9, 3))
    more = channel(x, 0.1, stream=user_generators(9, 4))
    assert torch.equal(few.y, more.y[:, :3]) and torch.equal(few.h, more.h[:, :3])
    assert not torch.equal(more.h[:, 0], more.h[:, 1])


def test_sionna_generator_is_restored():
    from sionna.phy import config

    before = config.torch_rng("cpu")
    with sionna_generator(torch.Generator().manual_seed(0), "cpu"):
        assert config.torch_rng("cpu") is not before
    assert config.torch_rng("cpu") is before


def test_broadcast_independent_channels_per_user():
    from channels.flat import broadcast

    channel = TDLChannel("A", resource_grid=small_grid(num_ofdm_symbols=1, pilot_ofdm_symbol_indices=()))
    common = unit_symbols(600, 1, 24)[:, 0]
    out = channel(broadcast(common, 2), 0.0, stream=user_generators(4, 2))
    assert torch.allclose(out.x_hat[:, 0], common, atol=1e-4) and torch.allclose(out.x_hat[:, 1], common, atol=1e-4)
    h0, h1 = out.h[:, 0, 0], out.h[:, 1, 0]
    correlation = (h0 * h1.conj()).mean().abs() / torch.sqrt(h0.abs().pow(2).mean() * h1.abs().pow(2).mean())
    assert correlation < 0.1


def test_bad_options_raise():
    with pytest.raises(ValueError, match="model"):
        TDLChannel("Z")
    with pytest.raises(ValueError, match="channel_estimation"):
        TDLChannel("A", channel_estimation="mmse")
    with pytest.raises(ValueError, match="pilots"):
        TDLChannel("A", resource_grid=small_grid(pilot_ofdm_symbol_indices=()), channel_estimation="ls")


def test_ls_noiseless_static_channel_is_identity():
    # Static channel, pilots on every subcarrier: LS + linear interpolation is exact without noise.
    channel = TDLChannel("A", resource_grid=small_grid(), channel_estimation="ls")
    x = unit_symbols(2, 2, 400)
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.x_hat).all()
    assert torch.allclose(out.x_hat, x, atol=1e-4)


def test_pilots_are_the_same_in_every_process():
    import subprocess
    import sys

    script = ("from channels.ofdm import make_resource_grid; "
              "print(make_resource_grid(14, 24, 30e3, (2, 11)).pilot_pattern.pilots.flatten()[:16].tolist())")
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[2]).stdout for _ in range(2)}
    assert len(runs) == 1 and "j" in runs.pop()
