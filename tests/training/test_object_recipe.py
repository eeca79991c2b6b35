"""The object-token recipe end to end on tiny data: stage 0 trains the codec's own object head,
stage 2 with the vision side frozen leaves the head and the encoder alone, the card's scores, and a
later stage refuses a codec setting its starting codec does not have."""

import pytest
import torch

from simulator.errors import UserError
from simulator.models.checkpoint import load_codec
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _tensors(model, prefix):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}


def test_object_recipe_trains_the_head_in_stage_0_and_keeps_it_after(tiny_data, tmp_path):
    from simulator.training.model_card import score_codec

    config = make_config(tiny_data, tmp_path / "run", steps=2,
                         vision={"object_weight": 1.0}, instruct={"trainable": ["projector", "llm_base"]})
    config.codec.update({"visual_tokens": "objects", "max_objects": 4})
    trainer = Trainer(config)
    trainer.prepare()
    fresh = trainer.fresh_model()
    head_before = _tensors(fresh, "object_head.")
    trainer.run("vision")
    after_vision = load_codec(config.stage_dir("vision") / "final", "cpu")
    assert after_vision.config.visual_tokens == "objects"
    assert any(not torch.equal(head_before[n], p) for n, p in _tensors(after_vision, "object_head.").items())
    trainer.run("all")
    aligned = load_codec(config.stage_dir("align") / "final", "cpu")
    instructed = load_codec(config.stage_dir("instruct") / "final", "cpu")
    for prefix in ("object_head.", "vision."):  # frozen in stage 2
        before, after = _tensors(aligned, prefix), _tensors(instructed, prefix)
        assert all(torch.equal(before[n], after[n]) for n in before)
    changed = [n for n, p in _tensors(instructed, "llm.").items() if not torch.equal(_tensors(aligned, "llm.")[n], p)]
    assert any("lora_" not in n for n in changed)  # the whole LLM trained, not only the adapters
    plan = (("vqa", 6, (("awgn", (float("inf"), 10.0)),)), ("classify", 4, (("awgn", (float("inf"),)),)))
    rows = score_codec(config.out_dir + "/final", "clevr", tiny_data / "text", plan=plan, clevr_dir=tiny_data / "clevr")
    assert [(r["task"], r["channel"], r["snr_db"]) for r in rows] == [("vqa", "none", None), ("vqa", "awgn", 10.0),
                                                                        ("classify", "none", None)]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["num_samples"] == n for r, n in zip(rows, (6, 6, 4)))
    config.codec["max_objects"] = 5  # a later stage starts from the earlier codec: refused, not ignored
    with pytest.raises(UserError, match=r"codec.max_objects is 5 but the codec in .*stage1_align/final has 4"):
        Trainer(config).run("instruct")
