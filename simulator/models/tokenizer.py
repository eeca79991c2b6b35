"""Tokenizer for the ``tiny`` profile, trained locally with ``tokenizers`` (no hub download).

A word-level vocabulary with lower-cased, punctuation-split words: the task texts (CLEVR-like
questions, answers, captions, instructions, movie reviews) have a small regular vocabulary, and one
token per word keeps answers short. Or byte-pair subwords within those words (``kind="bpe"``): a rare
review word becomes known pieces instead of ``<unk>``, while the frequent CLEVR words stay whole.
Special tokens have fixed ids so checkpoints stay comparable. The ``paper`` profile uses the Gemma
tokenizer from the user's local LLM directory instead.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SPECIAL_TOKENS", "TOKENIZER_KINDS", "train_tokenizer", "train_word_tokenizer", "tokenizer_kind"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
TOKENIZER_KINDS = {"words": "WordLevel", "bpe": "BPE"}  # kind -> the ``tokenizers`` model's type
_CONTINUATION = "##"  # marks a subword that continues a word, so the WordPiece decoder rejoins it


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, kind: str = "words", min_frequency: int = 1):
    """Train a tokenizer of ``kind`` (``"words"`` or ``"bpe"``, :data:`TOKENIZER_KINDS`); returns a
    ``transformers.PreTrainedTokenizerFast``.

    Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3. Encoding adds ``<bos>`` in front;
    padding is on the left (what batched generation needs). Both kinds lower-case and split words at
    spaces and punctuation; ``"bpe"`` then merges characters within a word up to ``vocab_size``
    tokens, every piece after a word's first marked ``##``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers, decoders
    from transformers import PreTrainedTokenizerFast

    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind {kind!r} is not one of {sorted(TOKENIZER_KINDS)}")
    if kind == "bpe":
        core = Tokenizer(models.BPE(unk_token="<unk>", continuing_subword_prefix=_CONTINUATION))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix=_CONTINUATION)
    else:
        core = Tokenizer(models.WordLevel(unk_token="<unk>"))
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(SPECIAL_TOKENS))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    core.train_from_iterator(texts, trainer=trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 1)]
    )
    # Joins words with spaces and a word's "##" pieces without, and tidies punctuation.
    core.decoder = decoders.WordPiece(prefix=_CONTINUATION, cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
        unk_token="<unk>", padding_side="left",
    )


def train_word_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 1):
    """:func:`train_tokenizer` with one token per word (what the baselines use)."""
    return train_tokenizer(texts, vocab_size, "words", min_frequency)


def tokenizer_kind(tokenizer) -> str:
    """The kind (a key of :data:`TOKENIZER_KINDS`) of a tokenizer this module trained."""
    import json

    model_type = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"]
    kinds = {model: kind for kind, model in TOKENIZER_KINDS.items()}
    if model_type not in kinds:
        raise ValueError(f"a {model_type} tokenizer is neither of {sorted(TOKENIZER_KINDS)}")
    return kinds[model_type]
