"""What the long-running commands (``run``, ``sweep``) share: progress bars and SIGTERM handling."""

from __future__ import annotations

import sys

__all__ = ["terminate", "in_main_thread", "progress_bar", "close_progress"]


def terminate(signum, frame):
    """SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C: finished points are kept."""
    raise KeyboardInterrupt


def in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def progress_bar(total: int, desc: str, unit: str, quiet: bool, initial: int = 0):
    """A tqdm bar on stderr: redrawn in a terminal; in a log file (no terminal) a line every 30 s,
    so a long run on a cluster node shows how far it is and its ETA; nothing when ``quiet``."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=quiet,
                dynamic_ncols=interactive, mininterval=0.1 if interactive else 30.0,
                ascii=not interactive)


def close_progress(progress) -> None:
    if progress is not None:
        progress.close()
