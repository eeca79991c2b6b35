"""``python -m simulator info``: software versions and compute device."""

from __future__ import annotations

import json
import platform
from importlib import metadata

__all__ = ["add_arguments", "main", "collect_info"]

# Distribution names whose versions a bug report needs.
PACKAGES = {
    "torch": "torch",
    "sionna": "sionna-no-rt",
    "transformers": "transformers",
    "peft": "peft",
    "simpy": "simpy",
    "numpy": "numpy",
    "pandas": "pandas",
    "ray": "ray",
}


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON only")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict:
    """Versions (None where a package is missing), the device torch would use, and the package version."""
    import torch

    from simulator import __version__

    cuda = torch.cuda.is_available()
    return {
        "simulator": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(dist) for name, dist in PACKAGES.items()},
        "device": "cuda" if cuda else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "torch_threads": torch.get_num_threads(),
    }


def main(args) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"m4sc simulator {info['simulator']}  python {info['python']}  ({info['platform']})")
    for name, version in info["versions"].items():
        print(f"  {name:<13} {version or 'not installed'}")
    devices = ", ".join(info["cuda_devices"]) or "no CUDA device"
    print(f"  device        {info['device']} ({devices}; {info['torch_threads']} CPU threads)")
    return 0
