"""Closed-form BER of Gray square QAM against independently known expressions and numbers."""

import math

import numpy as np
import pytest

from channels.theory import ber_awgn, ber_rayleigh, ber_rayleigh_numerical, ber_theory, bits_per_symbol


def test_qpsk_awgn_spot_value():
    # 0.5 * erfc(sqrt(Es/N0 / 2)) at Es/N0 = 10 dB = 0.5 * erfc(sqrt(5)) = 7.827e-4
    assert ber_awgn("qpsk", 10.0) == pytest.approx(0.5 * math.erfc(math.sqrt(5.0)), rel=1e-12)
    assert ber_awgn("qpsk", 10.0) == pytest.approx(7.827e-4, rel=1e-3)


def test_qam16_awgn_spot_values():
    # 9.25e-3 is the textbook 16-QAM BER at Eb/N0 = 8 dB, i.e. Es/N0 = 8 + 10 log10(4) = 14.02 dB.
    assert ber_awgn("qam16", 8.0 + 10 * math.log10(4)) == pytest.approx(9.25e-3, rel=2e-3)
    # Hand-written exact 16-QAM Gray BER, a = sqrt(Es/N0 / 10).
    for snr_db in (0.0, 8.0, 16.0):
        a = math.sqrt(10 ** (snr_db / 10) / 10)
        expected = (3 * math.erfc(a) + 2 * math.erfc(3 * a) - math.erfc(5 * a)) / 8
        assert ber_awgn("qam16", snr_db) == pytest.approx(expected, rel=1e-12)
    assert ber_awgn("qam16", 8.0) == pytest.approx(0.0982, rel=1e-3)


def test_qam64_awgn_high_snr_dominant_term():
    # At high SNR the 64-QAM BER is (7/24) erfc(sqrt(Es/N0 / 42)) to within 0.1 %.
    snr_db = 12.0 + 10 * math.log10(6)  # Eb/N0 = 12 dB
    expected = 7 / 24 * math.erfc(math.sqrt(10 ** (snr_db / 10) / 42))
    assert ber_awgn("qam64", snr_db) == pytest.approx(expected, rel=1e-3)


def test_qpsk_rayleigh_closed_form():
    snr = 10.0
    assert ber_rayleigh("qpsk", 10.0) == pytest.approx(0.5 * (1 - math.sqrt(snr / (2 + snr))), rel=1e-12)
    assert ber_rayleigh("qpsk", 10.0) == pytest.approx(0.04356, rel=1e-3)


@pytest.mark.parametrize("modulation", ["qpsk", "qam16", "qam64"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_rayleigh_closed_form_equals_numerical_average(modulation, snr_db):
    assert ber_rayleigh(modulation, snr_db) == pytest.approx(ber_rayleigh_numerical(modulation, snr_db), rel=1e-6)


@pytest.mark.parametrize("modulation", ["qpsk", "qam16", "qam64"])
def test_ber_decreases_with_snr_and_fading_hurts(modulation):
    snr_db = np.arange(-5.0, 30.0, 1.0)
    awgn, rayleigh = ber_awgn(modulation, snr_db), ber_rayleigh(modulation, snr_db)
    assert awgn.shape == rayleigh.shape == snr_db.shape
    assert np.all(np.diff(awgn) < 0) and np.all(np.diff(rayleigh) < 0)
    assert np.all(rayleigh > awgn) and np.all(awgn <= 0.5)


def test_ber_theory_dispatch_and_bad_modulation():
    assert ber_theory("awgn", "qpsk", 3.0) == ber_awgn("qpsk", 3.0)
    assert ber_theory("rayleigh", 4, 3.0) == ber_rayleigh("qam16", 3.0)
    assert ber_theory("tdl", "qpsk", 3.0) is None
    assert bits_per_symbol("qam64") == 6
    with pytest.raises(ValueError, match="modulation"):
        ber_awgn("qam8", 3.0)
    with pytest.raises(ValueError, match="modulation"):
        bits_per_symbol(3)
