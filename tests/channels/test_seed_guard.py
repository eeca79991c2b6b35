"""Sionna's first import does not reseed torch (channels/__init__.py): seeded runs repeat across processes."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

_DRAW_AFTER_FIRST_CHANNEL_CALL = """
import torch
torch.manual_seed(5)
from channels.flat import AWGNChannel  # imports Sionna lazily, at the call below
AWGNChannel()(torch.ones(1, 1, 4, dtype=torch.complex64), 0.1, torch.Generator().manual_seed(1))
print(torch.rand(3).tolist())
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_first_sionna_import_leaves_torch_global_generator_alone():
    import torch

    torch.manual_seed(5)
    expected = str(torch.rand(3).tolist())
    assert _run(_DRAW_AFTER_FIRST_CHANNEL_CALL) == expected
    assert _run(_DRAW_AFTER_FIRST_CHANNEL_CALL) == expected  # and so the same in every process


def test_without_the_guard_sionna_reseeds_torch():
    """What the guard is for: Sionna's config seeds torch's generator from the OS at import."""
    code = "import torch\ntorch.manual_seed(5)\nimport sionna.phy\nprint(torch.rand(3).tolist())"
    draws = {_run(code) for _ in range(2)}
    assert len(draws) == 2
