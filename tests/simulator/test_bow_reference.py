"""scripts/bow_reference.py: the bag-of-words logistic regression every semantic system must beat."""

import json
import random

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("bow_reference")


def write_split(folder, cue_words, noise_words, sizes, seed=0, flip=0.0):
    """Sentences of noise words plus one cue word whose label it names; ``flip``: label noise."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in sizes.items():
        rows = []
        for _ in range(size):
            label = rng.choice(["positive", "negative"])
            words = rng.sample(noise_words, 4) + [rng.choice(cue_words[label])]
            rng.shuffle(words)
            shown = label if rng.random() >= flip else ("negative" if label == "positive" else "positive")
            rows.append({"text": " ".join(words) + " .", "label": shown})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


CUES = {"positive": ["superb", "moving", "witty"], "negative": ["dull", "tedious", "clumsy"]}
NOISE = [f"w{k}" for k in range(40)]


def test_separable_words_are_learnt_exactly(script, tmp_path):
    write_split(tmp_path, CUES, NOISE, {"train": 300, "val": 100, "test": 200})
    result = script.bow_reference(tmp_path)
    assert result["test_accuracy"] == 1.0 and result["test_standard_error"] == 0.0
    assert result["C"] in script.C_GRID and result["test_sentences"] == 200


def test_label_noise_caps_the_accuracy_near_its_rate(script, tmp_path):
    # 25% of labels flipped: the best classifier scores ~0.75 (binomial error ~0.014 on 1000 sentences).
    write_split(tmp_path, CUES, NOISE, {"train": 2000, "val": 500, "test": 1000}, seed=1, flip=0.25)
    result = script.bow_reference(tmp_path)
    assert abs(result["test_accuracy"] - 0.75) < 0.05


def test_missing_split_exits_2(script, tmp_path, capsys):
    assert script.main(["--text-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sentiment split" in err[0]
