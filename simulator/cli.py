"""Command-line entry point: ``python -m simulator <command> ...``.

Every sub-command lives in its own module ``simulator.commands.<name>`` with two functions,
``add_arguments(parser)`` and ``main(args) -> int``, imported only when that command runs, so
``--help`` never imports torch or Sionna. Bad input raises :class:`simulator.errors.UserError`
(or is caught by argparse) and ends as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from simulator.errors import EXIT_USAGE, Interrupted, UserError

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> one-line help. Each name is a module in simulator/commands/.
COMMANDS: dict[str, str] = {
    "ber": "Monte-Carlo BER/BLER of the digital chain next to the closed form",
    "info": "versions, device, and model parameter counts",
    "bench": "benchmarks on this machine (channel throughput, ...)",
    "data": "make / convert / prepare datasets (CLEVR-like generator, sentiment text)",
    "train": "train the semantic codec (stages 0-3), resumable",
    "eval": "task accuracy of a codec versus SNR through a channel",
    "calibrate": "rate table of a nested codec for the snr rate policy (rate_table.json)",
    "run": "simulate a scenario YAML (BS to many users, semantic sharing) and write results/<run>/",
    "plot": "Fig. 5/6-style figures from result folders",
    "sweep": "parameter sweeps over scenarios on Ray (local or a cluster), resumable",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) and exits with status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _command_module(name: str):
    return importlib.import_module(f"simulator.commands.{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. Only ``command``'s module is imported to add its arguments (None: none)."""
    parser = _Parser(
        prog="python -m simulator",
        description="M4SC link-level simulator: MLLM semantic communication from a base station to many users.",
    )
    parser.add_argument("--version", action="store_true", help="print the package version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _command_module(name).add_arguments(sub_parser)
    return parser


def _requested_command(argv: list[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _requested_command(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.version:
        from simulator import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(_command_module(args.command).main(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        print(str(err) if isinstance(err, Interrupted) else "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into a reader that stopped early (``| head``): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
