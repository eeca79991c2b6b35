"""The shipped M4SC model cards agree with themselves: the total training time is the sum of the
stage table, in the JSON and in the text."""

import json
import re

import pytest

from simulator.assets import CHECKPOINTS_DIR


@pytest.mark.parametrize("name", ["m4sc_tiny", "m4sc_gemma3_270m"])
def test_the_total_training_time_is_the_sum_of_the_stages(name):
    folder = CHECKPOINTS_DIR / name
    card = json.loads((folder / "model_card.json").read_text())
    total = sum(stage["time_s"] for stage in card["stages"])
    assert card["total_train_time_s"] == pytest.approx(total, abs=0.1)
    text = (folder / "MODEL_CARD.md").read_text()
    rows = [float(row.split("|")[4].split()[0]) for row in text.splitlines()
            if re.match(r"\| [a-z]+ \| \d+ \| ", row)]
    assert sum(rows) == pytest.approx(total, abs=0.5)
    [stated] = re.findall(r"Total training time: ([\d.]+) h", text)
    assert float(stated) == pytest.approx(total / 3600, abs=0.006)
