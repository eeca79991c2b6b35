"""Receiver loss of this project's bit-level digital chain against Sionna's PHY-abstraction tables.

    python scripts/calibrate_digital.py [--table 1] [--block-bits 1024] [--blocks 400] [--target-bler 0.1]
    python scripts/calibrate_digital.py --at-snr -5 --block-bits 32 40 48 56 64 72 80 88 [--blocks 4000]

For every MCS of the 38.214 table, the SNR at which the bit-level chain (5G LDPC, boxplus-phi, 20
iterations, APP demapping, AWGN) reaches the target BLER with code blocks of ``--block-bits``
information bits (CRC included) is found in 0.1 dB steps from the tables' threshold (up or down);
the difference is that MCS's receiver loss in dB at that block size. Prints the mapping to paste
into ``channels/link_adaptation.py`` (``RECEIVER_LOSS_DB``). 5-15 minutes on 2 cores.

``--at-snr SNR``: the top of the waterfall instead, for the lowest MCS only (the one the chain uses
below every threshold, where ARQ decides how many payloads arrive): per block size, the shift of the
tables that gives the bit-level chain's BLER at ``SNR`` dB. A few minutes for 8 sizes.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.digital import DigitalChain  # noqa: E402
from channels.link_adaptation import (CRC_BITS, DEFAULT_CODE_BLOCK_BITS, code_block_bler, mcs_table,  # noqa: E402
                                      tables_required_snr_db)
from channels.flat import AWGNChannel  # noqa: E402
from channels.randomness import user_generators  # noqa: E402


def bit_level_bler(chain: DigitalChain, snr_db: float, block_bits: int, blocks: int, seed: int) -> float:
    payload = block_bits - CRC_BITS  # one code block
    bits = torch.randint(0, 2, (blocks, 1, payload), generator=torch.Generator().manual_seed(seed)).float()
    result = chain.transmit(bits, AWGNChannel(equalizer="zf"), snr_db, stream=user_generators(seed, 1))
    # The receiver's view, as the simulator's ARQ has it: a block whose CRC fails is lost even when its
    # payload bits happen to be right (with 8-64 payload bits most of a short block is CRC).
    return (~result.crc_ok | result.block_errors).float().mean().item()


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


def loss_at_snr(mcs, bler: float, snr_db: float, block_bits: int) -> float:
    """The shift ``d`` (dB, within +-3) at which the tables' BLER at ``snr_db - d`` equals ``bler``
    (the receiver loss the abstraction needs there), by bisection on the monotone BLER curve."""
    def tables(offset: float) -> float:
        sinr = torch.tensor([10.0 ** ((snr_db - offset) / 10.0)])
        return float(code_block_bler(mcs, sinr, block_bits, receiver_loss=False)[0])

    low, high = -3.0, 3.0  # tables(low) < bler < tables(high): BLER grows with the shift
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if tables(middle) < bler else (low, middle)
    return round((low + high) / 2, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=int, default=1)
    parser.add_argument("--block-bits", type=int, nargs="+", default=[DEFAULT_CODE_BLOCK_BITS])
    parser.add_argument("--at-snr", type=float, default=None, help="match the lowest MCS's BLER at this SNR (dB)")
    parser.add_argument("--blocks", type=int, default=400)
    parser.add_argument("--target-bler", type=float, default=0.1)
    args = parser.parse_args()
    if args.at_snr is not None:
        return waterfall_top(args)
    args.block_bits = args.block_bits[0]
    losses = {}
    for mcs in mcs_table(args.table):
        chain = DigitalChain.from_mcs(mcs)
        threshold = tables_required_snr_db(mcs, args.target_bler, args.block_bits)
        if math.isinf(threshold):  # the tables never reach the target below 30 dB: the MCS is never chosen
            losses[mcs.index] = 0.0
            print(f"MCS {mcs.index:2d}: the tables never reach BLER {args.target_bler} below 30 dB; loss 0", flush=True)
            continue
        losses[mcs.index] = receiver_loss(chain, threshold, args.block_bits, args.blocks, args.target_bler, mcs.index)
        print(f"MCS {mcs.index:2d} ({2 ** mcs.modulation_order}-QAM, r={mcs.code_rate:.3f}): tables {threshold:+.1f} dB, "
              f"bit level {losses[mcs.index]:+.1f} dB", flush=True)
    print(f"RECEIVER_LOSS_DB[{args.table}][{args.block_bits}] = {losses}")
    return 0


def waterfall_top(args) -> int:
    """``--at-snr``: per block size, the lowest MCS's loss matching the bit-level BLER at that SNR."""
    mcs = mcs_table(args.table)[0]
    chain = DigitalChain.from_mcs(mcs)
    losses = {}
    for block_bits in args.block_bits:
        bler = bit_level_bler(chain, args.at_snr, block_bits, args.blocks, seed=block_bits)
        losses[block_bits] = loss_at_snr(mcs, bler, args.at_snr, block_bits)
        print(f"MCS {mcs.index} at {args.at_snr:+.1f} dB, {block_bits}-bit blocks: bit-level BLER {bler:.4f}, "
              f"loss {losses[block_bits]:+.2f} dB", flush=True)
    print(f"MCS {mcs.index}: {losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
