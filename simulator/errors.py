"""The exceptions the command line turns into one line: bad input (exit status 2) and a reported interrupt."""

from pathlib import Path

__all__ = ["UserError", "Interrupted", "EXIT_USAGE", "not_a_folder"]

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the user (argument, file, config value). The message is shown as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with the one line to show (what was kept, how to go on)."""


def not_a_folder(path: str | Path, what: str = "folder") -> str:
    """Why ``path`` (not an existing directory) cannot be used as ``what``: ``"WHAT not found: PATH"``,
    or ``"PATH is a file, not a WHAT"`` when it names a file."""
    path = Path(path)
    if path.exists():
        return f"{path} is a file, not a {what}"
    return f"{what} not found: {path}"
