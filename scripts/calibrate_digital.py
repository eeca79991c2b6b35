"""Receiver loss of this project's bit-level digital chain against Sionna's PHY-abstraction tables.

    python scripts/calibrate_digital.py [--table 1] [--block-bits 1024] [--blocks 400] [--target-bler 0.1]

For every MCS of the 38.214 table, the SNR at which the bit-level chain (5G LDPC, boxplus-phi, 20
iterations, APP demapping, AWGN) reaches the target BLER with code blocks of ``--block-bits``
information bits (CRC included) is found in 0.1 dB steps from the tables' threshold (up or down);
the difference is that MCS's receiver loss in dB at that block size. Prints the mapping to paste
into ``channels/digital.py`` (``RECEIVER_LOSS_DB``). 5-15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.digital import CRC_BITS, DEFAULT_CODE_BLOCK_BITS, DigitalChain, mcs_table, tables_required_snr_db  # noqa: E402
from channels.flat import AWGNChannel  # noqa: E402
from channels.randomness import user_generators  # noqa: E402


def bit_level_bler(chain: DigitalChain, snr_db: float, block_bits: int, blocks: int, seed: int) -> float:
    payload = block_bits - CRC_BITS  # one code block
    bits = torch.randint(0, 2, (blocks, 1, payload), generator=torch.Generator().manual_seed(seed)).float()
    result = chain.transmit(bits, AWGNChannel(equalizer="zf"), snr_db, stream=user_generators(seed, 1))
    return result.block_errors.float().mean().item()


def receiver_loss(chain: DigitalChain, threshold_db: float, block_bits: int, blocks: int, target: float,
                  seed: int) -> float:
    """Smallest offset (0.1 dB steps, within +-3 dB) from the tables' threshold at which the chain's
    BLER is <= target."""
    def passes(offset: float) -> bool:
        return bit_level_bler(chain, threshold_db + offset, block_bits, blocks, seed) <= target

    offset = 0.0
    if passes(offset):
        while offset > -3.0 and passes(round(offset - 0.1, 1)):
            offset = round(offset - 0.1, 1)
        return offset
    while offset < 3.0 and not passes(offset):
        offset = round(offset + 0.1, 1)
    return offset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=int, default=1)
    parser.add_argument("--block-bits", type=int, default=DEFAULT_CODE_BLOCK_BITS)
    parser.add_argument("--blocks", type=int, default=400)
    parser.add_argument("--target-bler", type=float, default=0.1)
    args = parser.parse_args()
    losses = {}
    for mcs in mcs_table(args.table):
        chain = DigitalChain.from_mcs(mcs)
        threshold = tables_required_snr_db(mcs, args.target_bler, args.block_bits)
        losses[mcs.index] = receiver_loss(chain, threshold, args.block_bits, args.blocks, args.target_bler, mcs.index)
        print(f"MCS {mcs.index:2d} ({2 ** mcs.modulation_order}-QAM, r={mcs.code_rate:.3f}): tables {threshold:+.1f} dB, "
              f"bit level {losses[mcs.index]:+.1f} dB", flush=True)
    print(f"RECEIVER_LOSS_DB[{args.table}][{args.block_bits}] = {losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
