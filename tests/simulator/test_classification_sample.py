"""scripts/classification_sample.py: the paired, count-weighted difference of two systems' accuracies."""

import math

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("classification_sample")


def test_paired_difference_of_equal_weights(script):
    first, second = [True, True, False, False], [False, True, False, True]
    mean, error, effective = script.paired_difference(first, second, {0: 1, 1: 1, 2: 1, 3: 1})
    assert mean == 0.0 and error == pytest.approx(math.sqrt(2) / 4) and effective == 4
    assert script.paired_difference(first, first, {0: 1, 1: 1, 2: 1, 3: 1})[:2] == (0.0, 0.0)


def test_repeated_sentences_count_more_and_shrink_the_effective_sample(script):
    first, second = [True, False], [False, False]
    mean, error, effective = script.paired_difference(first, second, {0: 3, 1: 1})
    assert mean == pytest.approx(0.75)  # sentence 0, where only the first system is right, counts 3 times
    assert effective == pytest.approx(16 / 10)  # (3 + 1)^2 / (3^2 + 1^2)
    assert error == pytest.approx(math.sqrt(9 * 0.25**2 + 1 * 0.75**2) / 4)
