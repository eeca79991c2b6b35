"""``python -m simulator bench``: measurements on this machine.

Sections (more arrive with the simulator): ``channels`` (complex symbols per second through each
channel model for 8 users, forward only) and ``help_s`` (start-up time of ``--help``).
Speed targets are checked here, never in unit tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

__all__ = ["add_arguments", "main", "measure_help_seconds", "measure_channels"]

BENCH_CHANNELS = ("awgn", "rayleigh", "tdl")


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--channels", action="store_true", help="only the channel-throughput section")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier, faster)")
    parser.add_argument("--num-users", type=int, default=8, help="users for the channel section (default 8)")


def measure_help_seconds(repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``python -m simulator --help`` in a fresh interpreter (s)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simulator", "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def measure_channels(num_users: int, quick: bool) -> dict:
    """Complex symbols per second through each model of :data:`BENCH_CHANNELS` (all users counted)."""
    from channels.registry import channel_throughput

    repeats = 2 if quick else 5
    results = {}
    for name in BENCH_CHANNELS:
        rate = channel_throughput(name, num_users=num_users, repeats=repeats)
        results[name] = {"symbols_per_s": rate, "unit": "complex symbols/s", "num_users": num_users}
    return results


def main(args) -> int:
    from simulator.errors import UserError

    if args.num_users < 1:
        raise UserError(f"--num-users must be >= 1, got {args.num_users}")
    report: dict = {"unit_note": "rates are wall-clock on this machine; SNR irrelevant to speed"}
    report["channels"] = measure_channels(args.num_users, args.quick)
    if not args.channels:
        report["help_s"] = measure_help_seconds(1 if args.quick else 3)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"channel throughput, {args.num_users} users (forward, inference mode):")
    for name, row in report["channels"].items():
        print(f"  {name:<10} {row['symbols_per_s'] / 1e6:8.2f} M complex symbols/s")
    if "help_s" in report:
        print(f"python -m simulator --help: {report['help_s']:.2f} s")
    return 0
