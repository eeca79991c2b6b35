"""Tokenizer for the ``tiny`` profile, trained locally with ``tokenizers`` (no hub download).

A word-level vocabulary with lower-cased, punctuation-split words: the task texts (CLEVR-like
questions, answers, captions, instructions, movie reviews) have a small regular vocabulary, and one
token per word keeps answers short. Special tokens have fixed ids so checkpoints stay comparable.
The ``paper`` profile uses the Gemma tokenizer from the user's local LLM directory instead.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SPECIAL_TOKENS", "train_word_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


def train_word_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 1):
    """Train a word-level tokenizer; returns a ``transformers.PreTrainedTokenizerFast``.

    Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3. Encoding adds ``<bos>`` in front;
    padding is on the left (what batched generation needs).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers, decoders
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS))
    core.train_from_iterator(texts, trainer=trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 1)]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies punctuation
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
        unk_token="<unk>", padding_side="left",
    )
