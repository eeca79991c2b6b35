"""Flat channels (channels/flat.py): identity without noise, E|h|^2 = 1, uncoded BER against closed
forms, gradients, reproducibility, per-user streams and broadcast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import erfc

from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel, RayleighBlockFadingChannel, RicianBlockFadingChannel, broadcast
from channels.ofdm import sionna_generator
from channels.randomness import user_generators


def unit_symbols(batch, users, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.polar(torch.ones(batch, users, n), 2 * math.pi * torch.rand(batch, users, n, generator=g))


FLAT = [AWGNChannel(), RayleighBlockFadingChannel(), RayleighBlockFadingChannel(coherence_symbols=7),
        RicianBlockFadingChannel(1.0), RicianBlockFadingChannel(10.0, coherence_symbols=3, equalizer="mmse")]


@pytest.mark.parametrize("channel", FLAT, ids=lambda c: type(c).__name__)
def test_noiseless_is_identity(channel):
    x = unit_symbols(3, 4, 50)
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(1))
    assert out.x_hat.shape == x.shape == out.h.shape == out.no_eff.shape == out.y.shape
    assert torch.allclose(out.x_hat, x, atol=1e-4)
    assert torch.all(out.no_eff == 0)


@pytest.mark.parametrize("channel", [RayleighBlockFadingChannel(coherence_symbols=1)]
                         + [RicianBlockFadingChannel(k, coherence_symbols=1) for k in (0.0, 1.0, 10.0)],
                         ids=["rayleigh", "rician0", "rician1", "rician10"])
def test_unit_average_channel_gain(channel):
    x = torch.ones(50, 4, 2000, dtype=torch.complex64)  # 400k independent draws
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(7))
    assert abs(out.h.abs().pow(2).mean().item() - 1.0) < 0.02


# --- uncoded BER against closed forms (own formulas, independent of channels/theory.py) ---------
def q_func(z):
    return 0.5 * erfc(z / math.sqrt(2))


def ber_awgn(modulation, snr):
    if modulation == "qpsk":
        return 0.5 * erfc(math.sqrt(snr / 2))
    x = math.sqrt(snr / 5)  # 16-QAM Gray, exact: (3Q(x) + 2Q(3x) - Q(5x)) / 4
    return (3 * q_func(x) + 2 * q_func(3 * x) - q_func(5 * x)) / 4


def ber_rayleigh(modulation, snr):
    if modulation == "qpsk":
        g = snr / 2
        return 0.5 * (1 - math.sqrt(g / (1 + g)))
    value, _ = integrate.quad(lambda g: ber_awgn("qam16", snr * g) * math.exp(-g), 0, np.inf, limit=200)
    return value


def simulate_ber(channel, modulation, snr_db, num_symbols, seed=3):
    from sionna.phy.mapping import BinarySource, Demapper, Mapper

    bits_per_symbol = 2 if modulation == "qpsk" else 4
    mapper = Mapper("qam", bits_per_symbol)
    demapper = Demapper("maxlog", "qam", bits_per_symbol, hard_out=True)
    generator = torch.Generator().manual_seed(seed)
    with sionna_generator(generator, "cpu"):
        bits = BinarySource()([1, 2, num_symbols * bits_per_symbol])
    x = mapper(bits)
    no = snr_db_to_no(snr_db)
    out = channel(x, no, stream=generator)
    decided = demapper(out.x_hat, out.no_eff)
    return (decided != bits).float().mean().item()


CASES = [("qpsk", 0.0), ("qpsk", 5.0), ("qpsk", 9.0), ("qam16", 6.0), ("qam16", 12.0), ("qam16", 15.0)]


@pytest.mark.parametrize("modulation,snr_db", CASES)
def test_ber_awgn_matches_closed_form(modulation, snr_db):
    expected = ber_awgn(modulation, 10 ** (snr_db / 10))
    assert expected >= 1e-3
    measured = simulate_ber(AWGNChannel(), modulation, snr_db, num_symbols=250_000)
    assert abs(measured - expected) / expected < 0.10, (measured, expected)


@pytest.mark.parametrize("modulation,snr_db", [("qpsk", 0.0), ("qpsk", 10.0), ("qpsk", 20.0), ("qam16", 5.0), ("qam16", 15.0), ("qam16", 22.0)])
def test_ber_rayleigh_matches_closed_form(modulation, snr_db):
    expected = ber_rayleigh(modulation, 10 ** (snr_db / 10))
    assert expected >= 1e-3
    channel = RayleighBlockFadingChannel(coherence_symbols=1)
    measured = simulate_ber(channel, modulation, snr_db, num_symbols=200_000)
    assert abs(measured - expected) / expected < 0.10, (measured, expected)


@pytest.mark.parametrize("channel", [AWGNChannel(), RayleighBlockFadingChannel(coherence_symbols=4), RicianBlockFadingChannel(2.0, equalizer="mmse")],
                         ids=["awgn", "rayleigh", "rician"])
def test_gradients_reach_input(channel):
    x = unit_symbols(2, 3, 40).requires_grad_(True)
    out = channel(x, 0.1, stream=torch.Generator().manual_seed(0))
    (out.x_hat.abs() ** 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("channel", FLAT, ids=lambda c: type(c).__name__)
def test_same_seed_same_output(channel):
    x = unit_symbols(2, 3, 64)
    first = channel(x, 0.3, stream=torch.Generator().manual_seed(5))
    second = channel(x, 0.3, stream=torch.Generator().manual_seed(5))
    third = channel(x, 0.3, stream=torch.Generator().manual_seed(6))
    assert torch.equal(first.y, second.y) and torch.equal(first.h, second.h)
    assert not torch.equal(first.y, third.y)


@pytest.mark.parametrize("channel", FLAT, ids=lambda c: type(c).__name__)
def test_adding_a_user_keeps_other_users_draws(channel):
    x = unit_symbols(2, 5, 64)
    few = channel(x[:, :4], 0.3, stream=user_generators(11, 4))
    more = channel(x, 0.3, stream=user_generators(11, 5))
    assert torch.equal(few.y, more.y[:, :4]) and torch.equal(few.h, more.h[:, :4])


def test_broadcast_same_symbols_independent_channels():
    common = unit_symbols(4000, 1, 1)[:, 0]  # [batch, 1]
    x = broadcast(common, 3)
    out = RayleighBlockFadingChannel()(x, 0.0, stream=user_generators(2, 3))
    for user in range(3):
        assert torch.allclose(out.x_hat[:, user], common, atol=1e-4)
    h = out.h[:, :, 0]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        correlation = (h[:, a] * h[:, b].conj()).mean().abs() / torch.sqrt((h[:, a].abs() ** 2).mean() * (h[:, b].abs() ** 2).mean())
        assert correlation < 0.05
    noise = RayleighBlockFadingChannel()(x, 1.0, stream=user_generators(2, 3))
    residual = noise.y - noise.h * x
    corr = (residual[:, 0] * residual[:, 1].conj()).mean().abs() / residual[:, 0].abs().pow(2).mean()
    assert corr < 0.05
