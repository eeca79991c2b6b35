"""M4SC link-level simulator: MLLM-based multi-modal, multi-task, multi-user semantic communication.

The command line is ``python -m simulator <command>``; see ``simulator.cli``.
"""

import logging as _logging

__version__ = "0.1.0"
__all__ = ["__version__"]

# transformers (every model build) and peft import torchao when it is installed. Its import logs that
# its CUDA-only kernels are absent on a CPU machine and registers enums that torch calls deprecated:
# nothing a user can act on, on every command. The int8 path (simulator.models.quantize) reports
# its own failures as errors, which these levels still show.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
