"""Metrics against hand-checked cases."""

from __future__ import annotations

import pytest

from simulator.data.metrics import caption_bleu4, caption_rouge_l, classification_accuracy, normalize_answer, rouge_l, vqa_accuracy


def test_normalize_answer():
    assert normalize_answer("The Three.") == "3"
    assert normalize_answer("  a  Red cube! ") == "red cube"
    assert normalize_answer("Yes") == "yes"


def test_vqa_and_classification_accuracy():
    assert vqa_accuracy(["Two", "yes", "blue"], ["2", "no", "Blue."]) == pytest.approx(2 / 3)
    assert classification_accuracy(["Positive.", "negative"], ["positive", "positive"]) == 0.5
    assert vqa_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy(["a"], [])


def test_bleu4():
    sentence = "a large red metal cube is left of a small blue rubber sphere ."
    assert caption_bleu4([sentence], [[sentence]]) == pytest.approx(100.0)
    assert caption_bleu4([sentence, "there are two cubes ."], [["something else entirely"], [sentence, "there are two cubes ."]]) < 100.0
    # a matching second reference counts; references may differ in number per hypothesis
    assert caption_bleu4([sentence], [["unrelated words here now", sentence]]) == pytest.approx(100.0)
    assert caption_bleu4(["the the the the"], [["a b c d"]]) == pytest.approx(0.0)


def test_rouge_l_known_pair():
    # LCS("police killed the gunman", "police kill the gunman") = 3 of 4 tokens: P = R = 0.75.
    assert rouge_l("police killed the gunman", ["police kill the gunman"]) == pytest.approx(75.0)
    # P = 2/2, R = 2/4: F = (1 + b^2) P R / (R + b^2 P) with b = 1.2.
    expected = 100 * (1 + 1.44) * 1.0 * 0.5 / (0.5 + 1.44 * 1.0)
    assert rouge_l("red cube", ["a red metal cube"]) == pytest.approx(expected)
    assert rouge_l("x", ["y"]) == 0.0
    assert caption_rouge_l(["red cube", "x"], [["red cube"], ["y"]]) == pytest.approx(50.0)


def test_task_score_is_the_metric_of_each_kind():
    from simulator.data.metrics import caption_bleu4, caption_rouge_l, task_score

    assert task_score("vqa", ["Two", "red"], [("2",), ("blue", "red")]) == {"accuracy": 0.5}
    assert task_score("classify", ["positive", "negative"], [("positive",), ("positive",)]) == {"accuracy": 0.5}
    hypotheses, references = ["a red cube left of a ball"], [("a red cube left of a sphere", "a cube")]
    lists = [list(r) for r in references]
    assert task_score("caption", hypotheses, references) == {"bleu4": caption_bleu4(hypotheses, lists)}
    assert task_score("caption", hypotheses, references, rouge=True)["rouge_l"] == caption_rouge_l(hypotheses, lists)
    with pytest.raises(ValueError, match="unknown task kind"):
        task_score("speech", ["x"], [("x",)])
