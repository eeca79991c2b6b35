"""make_channel (channels/registry.py): every name builds a working block; bad input is a ValueError
naming the field."""

from __future__ import annotations

import math

import pytest
import torch

from channels.registry import CHANNEL_NAMES, channel_parameters, channel_throughput, make_channel

SMALL_GRID = dict(num_ofdm_symbols=4, fft_size=12, pilot_ofdm_symbol_indices=[1])
PARAMS = {
    "awgn": {},
    "rayleigh": dict(coherence_symbols=5),
    "rician": dict(k_factor=3.0),
    "tdl": dict(model="D", **SMALL_GRID),
    "cdl": dict(model="A", **SMALL_GRID),
    "umi": dict(num_users=3, calibration_slots=4, **SMALL_GRID),
    "uma": dict(num_users=3, calibration_slots=4, **SMALL_GRID),
}


def test_every_name_is_covered():
    assert set(CHANNEL_NAMES) == set(PARAMS)


@pytest.mark.parametrize("name", list(PARAMS))
def test_noiseless_perfect_csi_is_identity(name):
    channel = make_channel(name, **PARAMS[name])
    x = torch.polar(torch.ones(2, 3, 50), torch.rand(2, 3, 50, generator=torch.Generator().manual_seed(0)) * 2 * math.pi)
    out = channel(x, 0.0, stream=torch.Generator().manual_seed(1))
    assert out.x_hat.shape == x.shape
    assert torch.allclose(out.x_hat, x, atol=1e-4)


@pytest.mark.parametrize(
    "name,params,field",
    [
        ("fading", {}, "channel"),
        ("rician", dict(k_factor=-1.0), "k_factor"),
        ("rician", dict(k_factor="big"), "k_factor"),
        ("tdl", dict(model="Z"), "model"),
        ("cdl", dict(model="F"), "model"),
        ("tdl", dict(delay_spread=-1e-9), "delay_spread"),
        ("tdl", dict(channel_estimation="ideal"), "channel_estimation"),
        ("tdl", dict(fft_size=0), "fft_size"),
        ("tdl", dict(pilot_ofdm_symbol_indices=[20]), "pilot_ofdm_symbol_indices"),
        ("tdl", dict(channel_estimation="ls", pilot_ofdm_symbol_indices=[]), "pilot_ofdm_symbol_indices"),
        ("tdl", dict(min_speed=5.0, max_speed=1.0), "max_speed"),
        ("awgn", dict(equalizer="ml"), "equalizer"),
        ("awgn", dict(k_factor=1.0), "k_factor"),
        ("rayleigh", dict(coherence_symbols=0), "coherence_symbols"),
        ("umi", dict(num_users=0), "num_users"),
        ("uma", dict(indoor_probability=1.5), "indoor_probability"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(name, params, field):
    with pytest.raises(ValueError) as info:
        make_channel(name, **params)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_parameters_and_throughput():
    assert channel_parameters("rician")["k_factor"] is None
    assert "model" in channel_parameters("tdl")
    assert channel_throughput("awgn", num_users=2, num_symbols=64, repeats=1, batch=1) > 0
    assert channel_throughput("tdl", num_users=2, num_symbols=64, repeats=1, batch=1, fft_size=12) > 0


@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_every_channel_is_a_channel(name):
    """Every registered block satisfies the one Channel protocol (called as channel(x, no, stream))."""
    from channels.flat import Channel

    channel = make_channel(name, **PARAMS[name])
    assert isinstance(channel, Channel)
    assert not isinstance(object(), Channel)
