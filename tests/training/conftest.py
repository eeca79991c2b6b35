"""A tiny data set and a tiny training config, built in a temporary folder."""

import json

import pytest

from simulator.training.config import TrainConfig

SHORT_INSTRUCTIONS = {
    "vqa": "Answer the question about the image.",
    "caption": "Describe the image.",
    "classify": "Is the sentiment positive or negative?",
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    root = tmp_path_factory.mktemp("train-data")
    generate_clevr(root / "clevr", GeneratorConfig(num_images=16, seed=3, questions_per_image=4, captions_per_image=2))
    for split, count in (("train", 24), ("val", 4), ("test", 4)):
        path = root / "text" / "sentences" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"text": f"the film was {'great' if i % 2 else 'dull'} .", "label": "positive" if i % 2 else "negative"}
                for i in range(count)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def make_config(tiny_data, out_dir, steps=2, checkpoint_every=1, **stage_overrides) -> TrainConfig:
    stage = {"steps": steps, "batch_size": 4, "lr": 1e-3}
    return TrainConfig.model_validate({
        "profile": "tiny",
        "out_dir": str(out_dir),
        "precision": "fp32",  # the tests' numbers are fp32's; tests/training/test_precision.py runs bf16
        "max_prompt_tokens": 32,
        "checkpoint_every": checkpoint_every,
        "log_every": 1,
        "tokenizer_vocab_size": 256,
        "codec": {
            "instructions": SHORT_INSTRUCTIONS,
            "llm": {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                    "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16},
            "vision": {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                       "patch_size": 16},
            "projector": {"kind": "kan", "hidden_dim": 32},
            "channel_symbols_per_token": 8,
            "max_new_tokens": 4,
        },
        "data": {"clevr_dir": str(tiny_data / "clevr"), "text_dir": str(tiny_data / "text")},
        "stages": {name: {**stage, **stage_overrides.get(name, {})}
                   for name in ("vision", "lm", "align", "instruct", "joint")},
    })


def killed_then_resumed(trainer, stage: str, monkeypatch, kill_at: int = 4):
    """Run ``stage`` of a prepared ``trainer`` from a fresh codec until its ``kill_at``-th loss
    computation raises KeyboardInterrupt (a kill mid-stage), then ``--resume`` it; returns what
    ``run_stage`` returns."""
    from simulator.training.trainer import Trainer

    original, calls = Trainer._loss, {"n": 0}

    def dying_loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        trainer.run_stage(stage, trainer.fresh_model(), resume=False)
    monkeypatch.setattr(Trainer, "_loss", original)
    return trainer.run_stage(stage, trainer.fresh_model(), resume=True)
