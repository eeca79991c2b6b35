"""The reference no semantic system may lose to in sentiment classification: a bag-of-words logistic
regression (scikit-learn) on the codecs' sentence split, trained on ``train``, its regularisation
chosen on ``val``, scored on ``test`` (the 400 sentences of the model cards).

    python scripts/bow_reference.py [--text-dir data/text] [--subset sentences] [--json]

Needs scikit-learn (the ``test`` extra). Words and word pairs, lower-cased, as the codecs' tokenizer
sees them; a second of CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def read_split(folder: Path, split: str) -> tuple[list[str], list[int]]:
    """Texts and labels (1 = positive) of ``folder/<split>.jsonl``."""
    rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    return [row["text"] for row in rows], [int(row["label"] == "positive") for row in rows]


def bow_reference(folder: Path) -> dict:
    """Fit on train, pick C by val accuracy (the smallest C among ties), score test. Accuracy with its
    binomial standard error."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, val, test = (read_split(folder, split) for split in ("train", "val", "test"))

    def fit(c: float):
        model = make_pipeline(CountVectorizer(lowercase=True, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b"),
                              LogisticRegression(C=c, max_iter=2000))
        return model.fit(*train)

    def accuracy(model, split) -> float:
        texts, labels = split
        return float((model.predict(texts) == labels).mean())

    by_c = {c: accuracy(fit(c), val) for c in C_GRID}
    best = max(C_GRID, key=lambda c: (by_c[c], -c))
    test_accuracy = accuracy(fit(best), test)
    n = len(test[0])
    return {"model": "bag-of-words (1-2 grams) logistic regression", "C": best, "val_accuracy": by_c[best],
            "test_accuracy": test_accuracy, "test_standard_error": math.sqrt(test_accuracy * (1 - test_accuracy) / n),
            "train_sentences": len(train[0]), "test_sentences": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-dir", type=Path, default=Path("data/text"))
    parser.add_argument("--subset", default="sentences")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    folder = args.text_dir / args.subset
    if not (folder / "train.jsonl").is_file():
        print(f"error: no sentiment split in {folder} (prepare it with: python -m simulator data text --out "
              f"{args.text_dir})", file=sys.stderr)
        return 2
    result = bow_reference(folder)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']}, C = {result['C']}: val {result['val_accuracy']:.4f}, test "
              f"{result['test_accuracy']:.4f} +- {result['test_standard_error']:.4f} ({result['test_sentences']} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
