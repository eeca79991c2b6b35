"""Answer-balance statistics of a CLEVR-layout question set (``stats.json``).

Per split and per question family: answer histogram, majority answer and its accuracy (the best
constant answer *within that split*, an optimistic prior-only baseline), and a question-only
baseline: the most frequent training answer for the exact question text (falling back to the
family's training majority for unseen texts), scored on the split. Low numbers mean a model must
look at the image.
"""

from __future__ import annotations

from collections import Counter, defaultdict

__all__ = ["question_statistics", "FAMILY_NAMES"]

FAMILY_NAMES = {
    0: "exist",
    1: "count",
    2: "query_color",
    3: "query_shape",
    4: "query_size",
    5: "query_material",
    6: "compare_integer",
    7: "compare_attribute",
    8: "spatial_exist",
    9: "spatial_query",
}


def _majority(counter: Counter) -> tuple[str | None, float]:
    total = sum(counter.values())
    if not total:
        return None, 0.0
    answer, hits = max(counter.items(), key=lambda kv: (kv[1], kv[0]))
    return answer, hits / total


def _fit_question_only(train: list[dict]) -> tuple[dict, dict]:
    by_text: dict[str, Counter] = defaultdict(Counter)
    by_family: dict[int, Counter] = defaultdict(Counter)
    for q in train:
        by_text[q["question"]][q["answer"]] += 1
        by_family[q.get("question_family_index", -1)][q["answer"]] += 1
    return ({t: _majority(c)[0] for t, c in by_text.items()}, {f: _majority(c)[0] for f, c in by_family.items()})


def question_statistics(questions_by_split: dict[str, list[dict]]) -> dict:
    """Statistics for questions with answers, keyed by split (questions without an answer, as in
    real CLEVR test, are skipped). Fractions are in [0, 1]."""
    train = [q for q in questions_by_split.get("train", []) if q.get("answer") is not None]
    text_prior, family_prior = _fit_question_only(train)
    stats: dict = {"baseline_fit_on": "train", "splits": {}}
    for split, questions in questions_by_split.items():
        answered = [q for q in questions if q.get("answer") is not None]
        overall = Counter(q["answer"] for q in answered)
        majority_answer, majority_accuracy = _majority(overall)
        families: dict[str, dict] = {}
        grouped: dict[int, list[dict]] = defaultdict(list)
        for q in answered:
            grouped[q.get("question_family_index", -1)].append(q)
        question_only_hits = 0
        for family, items in sorted(grouped.items()):
            counts = Counter(q["answer"] for q in items)
            answer, accuracy = _majority(counts)
            hits = sum(text_prior.get(q["question"], family_prior.get(family)) == q["answer"] for q in items)
            question_only_hits += hits
            families[FAMILY_NAMES.get(family, str(family))] = {
                "question_family_index": family,
                "num_questions": len(items),
                "answers": dict(sorted(counts.items())),
                "majority_answer": answer,
                "majority_accuracy": round(accuracy, 4),
                "question_only_accuracy": round(hits / len(items), 4) if train else None,
            }
        stats["splits"][split] = {
            "num_images": len({q["image_index"] for q in questions}),
            "num_questions": len(questions),
            "num_answered": len(answered),
            "majority_answer": majority_answer,
            "majority_accuracy": round(majority_accuracy, 4),
            "question_only_accuracy": round(question_only_hits / len(answered), 4) if train and answered else None,
            "families": families,
        }
    return stats
