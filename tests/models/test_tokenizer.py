"""The tiny profile's tokenizers: word-level and byte-pair subwords, their round trips, the ids they
fix, and a training run that uses subwords."""

import pytest
from transformers import AutoTokenizer

from simulator.data.attributes import ATTRIBUTE_VALUES
from simulator.models.objects import word_attribute_table
from simulator.models.tokenizer import SPECIAL_TOKENS, tokenizer_kind, train_tokenizer

CLEVR = ["is there a large red metal cube left of the small blue rubber sphere ?",
         "what color is the cylinder behind the gray cube ?", "how many cyan spheres are there ?",
         "a small brown metal cylinder . a large green rubber cube . a small purple metal sphere .",
         "is the yellow thing the same size as the large cube ?", "yes", "no", "2", "3"]
REVIEWS = ["the film is a charming , funny and moving portrait .", "an unfunny , charmless and tedious mess .",
           "charming performances make the movie worth watching .", "the plot is tedious and the jokes are unfunny .",
           "a moving , beautifully acted drama .", "watching it is a mess of missed chances ."]
CORPUS = CLEVR * 20 + REVIEWS


@pytest.mark.parametrize("kind", ["words", "bpe"])
def test_special_ids_and_round_trip_of_known_text(kind):
    tokenizer = train_tokenizer(CORPUS, vocab_size=300, kind=kind)
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tokenizer_kind(tokenizer) == kind
    for text in CLEVR + REVIEWS:
        ids = tokenizer.encode(text)
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text.replace(" ?", "?").replace(" .", ".").replace(" ,", ",")


def test_subwords_know_a_new_word_that_the_word_vocabulary_calls_unknown():
    words = train_tokenizer(CORPUS, vocab_size=300, kind="words")
    subwords = train_tokenizer(CORPUS, vocab_size=300, kind="bpe")
    text = "charmingly unmoving"  # neither word is in the corpus; their pieces are
    assert words.encode(text, add_special_tokens=False) == [words.unk_token_id] * 2
    pieces = subwords.encode(text, add_special_tokens=False)
    assert len(pieces) > 2 and subwords.unk_token_id not in pieces
    assert subwords.decode(pieces) == text


def test_frequent_clevr_words_stay_one_token_so_the_attribute_table_finds_them():
    subwords = train_tokenizer(CORPUS, vocab_size=300, kind="bpe")
    table = word_attribute_table(subwords, len(subwords))
    for word in ("red", "cube", "large", "metal", "cyan", "spheres"):
        assert len(subwords.encode(word, add_special_tokens=False)) == 1, word
    named = {tuple(row) for row in table.tolist() if row[0] >= 0}
    colours_in_corpus = {c for c in ATTRIBUTE_VALUES["color"] if any(c in text.split() for text in CLEVR)}
    assert {(0, ATTRIBUTE_VALUES["color"].index(c)) for c in colours_in_corpus} <= named


def test_kind_survives_save_and_load_and_unknown_kinds_are_refused(tmp_path):
    train_tokenizer(CORPUS, vocab_size=300, kind="bpe").save_pretrained(str(tmp_path))
    assert tokenizer_kind(AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)) == "bpe"
    with pytest.raises(ValueError, match="tokenizer kind 'chars' is not one of"):
        train_tokenizer(CORPUS, kind="chars")
