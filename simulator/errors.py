"""The one exception type that the command line turns into a one-line message and exit status 2."""

__all__ = ["UserError", "EXIT_USAGE"]

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the user (argument, file, config value). The message is shown as one line."""
