"""Task metrics: VQA exact match on normalised answers, classification accuracy, caption BLEU-4
(sacrebleu, multiple references) and caption ROUGE-L (LCS F-measure, beta = 1.2 as in the COCO
caption evaluation). Accuracies are fractions in [0, 1]; BLEU and ROUGE-L are in [0, 100].
"""

from __future__ import annotations

import re
import string

__all__ = [
    "task_score",
    "normalize_answer",
    "vqa_accuracy",
    "classification_accuracy",
    "caption_bleu4",
    "rouge_l",
    "caption_rouge_l",
]

_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(answer: str) -> str:
    """Lowercase, punctuation to spaces, drop articles, number words to digits, squeeze spaces:
    ``"The Three."`` -> ``"3"``."""
    words = _PUNCTUATION.sub(" ", answer.lower()).split()
    return " ".join(_NUMBERS.get(w, w) for w in words if w not in _ARTICLES)


def _check_lengths(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def vqa_accuracy(predictions: list[str], answers: list[str]) -> float:
    """Exact-match accuracy after :func:`normalize_answer` (0.0 for empty input)."""
    _check_lengths(predictions, answers)
    if not predictions:
        return 0.0
    return sum(normalize_answer(p) == normalize_answer(a) for p, a in zip(predictions, answers)) / len(predictions)


def classification_accuracy(predictions: list[str], labels: list[str]) -> float:
    """Accuracy of predicted class names (case and surrounding punctuation/space ignored)."""
    _check_lengths(predictions, labels)
    if not predictions:
        return 0.0
    clean = lambda s: _PUNCTUATION.sub(" ", s.lower()).strip()  # noqa: E731
    return sum(clean(p) == clean(l) for p, l in zip(predictions, labels)) / len(predictions)


def caption_bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokenisation, exp smoothing off) with a variable
    number of references per hypothesis."""
    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    import sacrebleu

    width = max(len(r) for r in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    return float(sacrebleu.corpus_bleu(hypotheses, streams).score)


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _tokens(text: str) -> list[str]:
    return _PUNCTUATION.sub(" ", text.lower()).split()


def rouge_l(hypothesis: str, references: list[str], beta: float = 1.2) -> float:
    """Sentence ROUGE-L in [0, 100]: F-measure of the longest common subsequence, taking the best
    precision and best recall over references (COCO caption convention)."""
    hyp = _tokens(hypothesis)
    if not hyp or not references:
        return 0.0
    precisions, recalls = [], []
    for reference in references:
        ref = _tokens(reference)
        lcs = _lcs_length(hyp, ref)
        precisions.append(lcs / len(hyp))
        recalls.append(lcs / len(ref) if ref else 0.0)
    p, r = max(precisions), max(recalls)
    if p == 0.0 or r == 0.0:
        return 0.0
    return 100.0 * (1 + beta**2) * p * r / (r + beta**2 * p)


def caption_rouge_l(hypotheses: list[str], references: list[list[str]]) -> float:
    """Mean sentence ROUGE-L over the corpus, in [0, 100]."""
    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    return sum(rouge_l(h, r) for h, r in zip(hypotheses, references)) / len(hypotheses)


def task_score(kind: str, predictions: list[str], references, rouge: bool = False) -> dict[str, float]:
    """The one scorer of a task kind: ``{"accuracy"}`` for ``vqa`` (normalised exact match with the
    first reference) and ``classify`` (label match), ``{"bleu4"}`` (corpus BLEU-4 in [0, 100], with ``"rouge_l"``
    when ``rouge``) for ``caption``. ``references``: per prediction, the accepted outputs."""
    if kind == "caption":
        lists = [list(r) for r in references]
        score = {"bleu4": caption_bleu4(predictions, lists)}
        return {**score, "rouge_l": caption_rouge_l(predictions, lists)} if rouge else score
    first = [r[0] for r in references]
    if kind == "classify":
        return {"accuracy": classification_accuracy(predictions, first)}
    if kind == "vqa":
        return {"accuracy": vqa_accuracy(predictions, first)}
    raise ValueError(f"unknown task kind {kind!r}")

