"""M4SC link-level simulator: MLLM-based multi-modal, multi-task, multi-user semantic communication.

The command line is ``python -m simulator <command>``; see ``simulator.cli``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
