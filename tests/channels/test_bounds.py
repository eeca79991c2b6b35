"""The efficiency figure's bounds against values computed by hand."""

import math

import pytest

from channels.bounds import (awgn_capacity, awgn_dispersion, binary_entropy, fano_channel_uses, fano_min_bits,
                             normal_approximation_bits, normal_approximation_channel_uses, quasi_static_channel_uses)

LOG2E_SQUARED = (1 / math.log(2)) ** 2  # 2.0814


def test_capacity_and_dispersion_of_complex_awgn():
    assert awgn_capacity(0.0) == pytest.approx(1.0)
    assert awgn_capacity(10.0) == pytest.approx(math.log2(11))
    assert awgn_dispersion(0.0) == pytest.approx(0.75 * LOG2E_SQUARED)  # 1 x 3 / 2^2
    assert awgn_dispersion(40.0) == pytest.approx(LOG2E_SQUARED, rel=1e-7)  # -> (log2 e)^2 at high SNR


def test_normal_approximation_at_a_hand_computed_point():
    # n = 100, eps = 1e-3, 0 dB: 100 x 1 - sqrt(100 x 1.5611) x 3.0902 + log2(100) / 2 = 64.711 bits
    assert normal_approximation_bits(100, 1e-3, 0.0) == pytest.approx(64.711, abs=0.002)
    assert normal_approximation_channel_uses(64.711, 1e-3, 0.0) == pytest.approx(100.0, abs=0.01)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_short_messages_need_more_than_capacity_and_long_ones_approach_it(snr_db):
    ratios = [normal_approximation_channel_uses(k, 1e-3, snr_db) * awgn_capacity(snr_db) / k for k in (16, 256, 65536)]
    assert ratios[0] > ratios[1] > ratios[2] > 1.0 and ratios[2] < 1.03


def test_quasi_static_rayleigh_outage_at_a_hand_computed_point():
    # k = 10 bits, eps = 0.1, 10 dB: 10 / log2(1 + 10 x -ln 0.9) = 10 / log2(2.0536) = 9.632
    assert quasi_static_channel_uses(10, 0.1, 10.0) == pytest.approx(9.632, abs=0.002)
    # a fade deep enough to break the block is far likelier than AWGN's error: many more channel uses
    assert quasi_static_channel_uses(10, 1e-3, 10.0) > 5 * normal_approximation_channel_uses(10, 1e-3, 10.0)


def test_fano_bound_by_hand():
    assert binary_entropy(0.5) == pytest.approx(1.0) and binary_entropy(0.0) == 0.0
    assert fano_min_bits(3.0, 1.0, 8) == pytest.approx(3.0)  # no error allowed: all of H(A|Q)
    # accuracy 0.9 of 8 answers: 3 - h(0.1) - 0.1 log2 7 = 3 - 0.4690 - 0.2807 = 2.2503 bits
    assert fano_min_bits(3.0, 0.9, 8) == pytest.approx(2.2503, abs=1e-4)
    assert fano_channel_uses(3.0, 0.9, 8, 10.0) == pytest.approx(2.2503 / math.log2(11), abs=1e-4)
    assert fano_min_bits(1.0, 0.5, 2) == 0.0  # guessing a fair coin needs nothing
    assert fano_min_bits(2.0, 0.25, 4) == pytest.approx(0.0, abs=1e-12)  # nor does a uniform guess's accuracy


@pytest.mark.parametrize("call", [lambda: normal_approximation_channel_uses(0, 1e-3, 0.0),
                                  lambda: normal_approximation_channel_uses(8, 1.5, 0.0),
                                  lambda: quasi_static_channel_uses(8, 0.0, 0.0),
                                  lambda: awgn_capacity(math.inf),
                                  lambda: fano_min_bits(1.0, 1.2, 4)])
def test_out_of_range_input_is_refused(call):
    with pytest.raises(ValueError):
        call()
