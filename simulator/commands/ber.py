"""``python -m simulator ber``: Monte-Carlo BER (BLER when coded) next to the closed form."""

from __future__ import annotations

import json
import math

from simulator.errors import UserError

__all__ = ["add_arguments", "main"]

CHANNELS = ("awgn", "rayleigh")
MODULATIONS = ("qpsk", "qam16", "qam64")


def _finite_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SNR must be a number in dB, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"SNR must be a finite number in dB, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--channel", required=True, choices=CHANNELS, help="flat channel (Rayleigh: perfect CSI)")
    parser.add_argument("--modulation", required=True, choices=MODULATIONS, help="Gray-mapped QAM")
    parser.add_argument("--snr-db", required=True, nargs="+", type=_finite_float, metavar="SNR",
                        help="Es/N0 values in dB")
    parser.add_argument("--coded", action="store_true", help="5G LDPC coded chain (adds BLER)")
    parser.add_argument("--code-rate", type=float, default=0.5, help="LDPC code rate when --coded (default 0.5)")
    parser.add_argument("--num-bits", type=_positive_int, default=None, help="information bits per SNR point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON only: a list of objects, one per SNR")


def _format(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3e}"


def main(args) -> int:
    if args.coded and not 0.0 < args.code_rate < 1.0:
        raise UserError(f"--code-rate must be in (0, 1), got {args.code_rate}")
    from channels.ber import simulate_ber

    kwargs = {"coded": args.coded, "seed": args.seed}
    if args.coded:
        kwargs["code_rate"] = args.code_rate
    if args.num_bits is not None:
        kwargs["num_bits"] = args.num_bits
    try:
        rows = simulate_ber(args.channel, args.modulation, list(args.snr_db), **kwargs)
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.channel} / {args.modulation} / {'LDPC coded' if args.coded else 'uncoded'} (SNR = Es/N0)")
    print(f"{'snr_db':>8} {'ber':>11} {'ber_theory':>11} {'bler':>11} {'bits':>10}")
    for row in rows:
        print(f"{row['snr_db']:>8.2f} {_format(row['ber']):>11} {_format(row.get('ber_theory')):>11} "
              f"{_format(row.get('bler')):>11} {row['num_bits']:>10}")
    return 0
