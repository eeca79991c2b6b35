"""How much the restricted softmax of a token pool leaves out (``stages.joint.pool_top_words``).

    python scripts/pool_word_coverage.py CHECKPOINT RUN/stage3_joint/token_pool.safetensors \
        [--tokens 2000] [--snr-db -5 0 10 20] [--channel awgn]

Sends ``--tokens`` pool tokens (drawn with seed 0) through the checkpoint's channel codec at each SNR
and prints, under the full LM head, how often the decoded argmax is one of the pool's words and the
probability mass outside them: the part of the full CE the restricted one does not see. A few
seconds per SNR for Gemma's 262,144-word head on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys


def coverage(codec, pool, tokens: int, snr_dbs: list[float], channel: str = "awgn") -> list[dict]:
    """Per SNR (dB): the share of ``tokens`` pool tokens (drawn with seed 0) whose full-head argmax
    after the channel is one of ``pool.words``, and the mean and 99th percentile of the softmax mass
    outside them."""
    import torch

    from simulator.training.stages import decoded_through_channel

    generator = torch.Generator().manual_seed(0)
    rows = torch.randperm(pool.targets.numel(), generator=generator)[:tokens]
    inside = torch.zeros(codec.lm_head.weight.shape[0], dtype=torch.bool)
    inside[pool.words] = True
    out = []
    with torch.no_grad():
        for snr_db in snr_dbs:
            decoded = decoded_through_channel(codec, pool.hidden[rows], None, channel, snr_db, generator)
            probabilities = codec.logits(decoded).float().softmax(-1)
            outside = (probabilities * ~inside).sum(-1)
            out.append({"snr_db": snr_db, "argmax_inside": float(inside[probabilities.argmax(-1)].float().mean()),
                        "mass_outside_mean": float(outside.mean()), "mass_outside_p99": float(outside.quantile(0.99))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("pool")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--snr-db", type=float, nargs="+", default=[-5.0, 0.0, 10.0, 20.0])
    parser.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh"])
    args = parser.parse_args()

    from simulator.models.checkpoint import CheckpointError, load_codec
    from simulator.training.token_pool import TokenPool

    pool = TokenPool.load(args.pool, None)
    if pool is None:
        _fail(f"{args.pool} is not a readable token pool (a stage folder's token_pool.safetensors)")
    if pool.words is None:
        _fail("the pool was built without pool_top_words: its softmax is the full head's")
    try:
        codec = load_codec(args.checkpoint, "cpu").eval()
    except CheckpointError as err:
        _fail(str(err))
    print(f"{min(args.tokens, pool.targets.numel())} tokens, {pool.words.numel()} words in the pool's softmax")
    for row in coverage(codec, pool, args.tokens, args.snr_db, args.channel):
        print(f"{args.channel} {row['snr_db']:5.1f} dB: argmax among the pool's words {row['argmax_inside']:.4f}, "
              f"mass outside them mean {row['mass_outside_mean']:.4f}, 99th percentile {row['mass_outside_p99']:.4f}")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
