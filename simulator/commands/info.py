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
    "torchao": "torchao",
    "simpy": "simpy",
    "numpy": "numpy",
    "pandas": "pandas",
    "ray": "ray",
}


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--profile", choices=("tiny", "paper", "gemma3-270m"), default=None,
                        help="also report the codec's parameter counts per component (built on the "
                             "meta device: no weights needed)")


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


def model_summary(profile: str) -> dict:
    """Parameter counts per component and the codec widths, from a weightless (meta) build."""
    import torch

    from simulator.models.config import profile_config
    from simulator.models.mllm import M4SCModel

    config = profile_config(profile, llm_path=None, vision_path=None)  # the published shapes, no weights
    with torch.device("meta"):
        model = M4SCModel(config)
    counts = model.parameter_counts()
    return {
        "profile": profile,
        "d": config.hidden_size,
        "c": config.channel_symbols_per_token,
        "channel_encoder_shape": [config.hidden_size, 2 * config.channel_symbols_per_token],
        "num_image_tokens": config.num_image_tokens,
        "projector": config.projector.kind,
        "parameters": counts,
        "total_parameters": sum(counts.values()),
    }


def main(args) -> int:
    info = collect_info()
    if args.profile:
        info["model"] = model_summary(args.profile)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"m4sc simulator {info['simulator']}  python {info['python']}  ({info['platform']})")
    for name, version in info["versions"].items():
        print(f"  {name:<13} {version or 'not installed'}")
    devices = ", ".join(info["cuda_devices"]) or "no CUDA device"
    print(f"  device        {info['device']} ({devices}; {info['torch_threads']} CPU threads)")
    if "model" in info:
        model = info["model"]
        print(f"codec profile {model['profile']}: d = {model['d']}, c = {model['c']} complex symbols per token "
              f"(channel encoder {model['d']} -> {2 * model['c']} reals), {model['num_image_tokens']} visual tokens")
        for name, count in model["parameters"].items():
            print(f"  {name:<16} {count / 1e6:10.2f} M")
        print(f"  {'total':<16} {model['total_parameters'] / 1e6:10.2f} M")
    return 0
