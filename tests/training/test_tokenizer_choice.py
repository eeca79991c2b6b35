"""``tokenizer: bpe``: a run trains with subwords end to end, its codec keeps them, and a run folder
holding the other kind of tokenizer is refused in one line."""

import pytest

from simulator.errors import UserError
from simulator.models.checkpoint import load_codec
from simulator.models.tokenizer import tokenizer_kind
from simulator.training.config import TrainConfig
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _config(tiny_data, out_dir, tokenizer: str) -> TrainConfig:
    payload = make_config(tiny_data, out_dir, steps=1, checkpoint_every=100).model_dump()
    return TrainConfig.model_validate({**payload, "tokenizer": tokenizer})


def test_a_subword_run_trains_every_stage_and_its_codec_keeps_the_subwords(tiny_data, tmp_path):
    final = Trainer(_config(tiny_data, tmp_path, "bpe")).run("all")
    codec = load_codec(final)
    assert tokenizer_kind(codec.tokenizer) == "bpe"
    pieces = codec.tokenizer.encode("dullness", add_special_tokens=False)  # not a corpus word; "dull" is
    assert len(pieces) > 1 and codec.tokenizer.unk_token_id not in pieces
    assert codec.tokenizer.decode(pieces) == "dullness"


def test_a_folder_with_the_other_tokenizer_is_refused(tiny_data, tmp_path):
    trainer = Trainer(_config(tiny_data, tmp_path, "words"))
    trainer.prepare()
    trainer.tokenizer()
    other = Trainer(_config(tiny_data, tmp_path, "bpe"))
    other.prepare()
    with pytest.raises(UserError, match=r"holds a 'words' tokenizer but the config asks for tokenizer 'bpe'"):
        other.tokenizer()
    trainer.run("vision")
    with pytest.raises(UserError, match=r"stage0_vision/final holds a 'words' tokenizer"):  # a later stage
        other.run("lm")


def test_unknown_tokenizer_kinds_are_refused_when_the_config_loads(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="tokenizer"):
        _config(tiny_data, tmp_path, "chars")
