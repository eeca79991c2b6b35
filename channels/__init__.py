"""Sionna-backed channel layer: fading channels, OFDM, broadcast/unicast allocation, digital chain.

Import the submodules directly (``from channels.flat import AWGNChannel``); this package ``__init__``
stays light so that importing it does not pull in Sionna.

Importing this package keeps Sionna's first import from reseeding torch: Sionna's config, created
when ``sionna.phy.config`` is first imported with no seed set, calls ``torch.default_generator.seed()``
(and the CUDA generators'), an OS-random reseed of torch's global generators. The submodules import
Sionna lazily, so that reseed landed inside seeded computations (a baseline's first training step
draws dropout after its first channel call) and made them differ from process to process. The
guard below restores torch's generator states around that one import; Sionna's own generators keep
their random seeds (this package draws from its own per-user generators, :mod:`channels.randomness`).
"""

import importlib.abc
import importlib.machinery
import sys

_SIONNA_CONFIG = "sionna.phy.config"


class _TorchSeedGuard(importlib.abc.MetaPathFinder):
    """Finds ``sionna.phy.config`` through the other finders and wraps its loader (once)."""

    def find_spec(self, name, path, target=None):
        if name != _SIONNA_CONFIG:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RestoringLoader(spec.loader)
                return spec
        return None


class _RestoringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        import torch

        cpu = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None  # applies a pending seed
        try:
            self.loader.exec_module(module)
        finally:
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)


if _SIONNA_CONFIG not in sys.modules and not any(isinstance(f, _TorchSeedGuard) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchSeedGuard())
