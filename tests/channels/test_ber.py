"""Monte-Carlo BER/BLER (channels.ber.simulate_ber) against theory and basic coded behaviour."""

import pytest

from channels.ber import simulate_ber


pytestmark = pytest.mark.usefixtures("one_torch_thread")


KEYS = {"snr_db", "ber", "ber_theory", "bler", "num_bits", "num_errors", "channel", "modulation",
        "num_symbols", "num_coded_bits", "coded", "code_rate"}


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
@pytest.mark.parametrize("modulation", ["qpsk", "qam16", "qam64"])
def test_uncoded_ber_matches_theory(channel, modulation):
    results = simulate_ber(channel, modulation, [0.0, 4.0, 8.0, 12.0], num_bits=300_000, seed=3)
    checked = 0
    for row in results:
        assert KEYS <= row.keys()
        assert row["channel"] == channel and row["modulation"] == modulation and row["bler"] is None
        if row["ber_theory"] >= 1e-3:
            assert row["ber"] == pytest.approx(row["ber_theory"], rel=0.10), row
            checked += 1
    assert checked >= 2


def test_uncoded_accounting_and_reproducibility():
    first = simulate_ber("awgn", "qam16", [6.0], num_bits=40_000, seed=7)[0]
    again = simulate_ber("awgn", "qam16", [6.0], num_bits=40_000, seed=7)[0]
    assert first == again
    assert first["num_bits"] == 40_000 and first["num_symbols"] == 10_000 and first["num_coded_bits"] == 40_000


def test_coded_error_free_at_high_snr_and_fails_at_very_low_snr():
    high, low = simulate_ber("awgn", "qpsk", [8.0, -10.0], coded=True, num_bits=4 * 1024, seed=1)
    assert high["ber"] == 0.0 and high["bler"] == 0.0 and high["num_blocks"] == 4
    assert high["ber_theory"] is None and high["code_rate"] == 0.5
    assert high["num_coded_bits"] == 4 * 2048 and high["num_symbols"] == 4 * 1024
    assert low["bler"] == 1.0 and low["ber"] > 0.2
    rayleigh = simulate_ber("rayleigh", "qam16", [25.0], coded=True, num_bits=2 * 1024, seed=1)[0]
    assert rayleigh["bler"] == 0.0


def test_coded_bler_non_increasing_in_snr():
    rows = simulate_ber("awgn", "qpsk", [0.0, 1.0, 2.0], coded=True, num_bits=8 * 1024, seed=2, max_errors=10_000)
    blers = [row["bler"] for row in rows]
    assert blers[0] > 0.5 and blers[-1] < 0.2
    for lower, higher in zip(blers, blers[1:]):
        assert higher <= lower + 0.1


@pytest.mark.parametrize("kwargs, field", [
    ({"channel": "tdl"}, "channel"),
    ({"modulation": "qam8"}, "modulation"),
    ({"snr_db": []}, "snr_db"),
    ({"snr_db": ["high"]}, "snr_db"),
    ({"num_bits": 0}, "num_bits"),
    ({"coded": True, "code_rate": 0.1}, "code_rate"),
])
def test_bad_inputs_name_the_field(kwargs, field):
    args = {"channel": "awgn", "modulation": "qpsk", "snr_db": [0.0], **kwargs}
    with pytest.raises(ValueError, match=field):
        simulate_ber(**args)
