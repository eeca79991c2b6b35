"""Random streams for the physical layer.

Sionna blocks draw from the global ``sionna.phy.config`` generator. The simulator instead injects
generators, so that one scenario seed fixes every draw and each user owns a stream: adding user
``U+1`` does not change the noise or fading of users ``0..U``.

A *stream* argument is one of
- ``None``: Sionna's global generator (``sionna.phy.config.seed = N`` makes it reproducible);
- one ``torch.Generator``: every user's draws come from it, in user order;
- a sequence of ``num_users`` generators: user ``u`` draws only from ``stream[u]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Stream", "user_generators", "complex_normal_per_user", "uniform_per_user"]

Stream = torch.Generator | Sequence[torch.Generator] | None


def user_generators(seed: int, num_users: int, stream_id: int = 0, device: str = "cpu") -> list[torch.Generator]:
    """One generator per user, seeded from ``(seed, stream_id, user)`` so streams never overlap.

    Args:
        seed: scenario seed.
        num_users: number of generators.
        stream_id: separates independent purposes (e.g. 0 = fading, 1 = noise).
    """
    generators = []
    for user in range(num_users):
        mixed = (seed * 1_000_003 + stream_id * 7_919 + user * 104_729) % (2**63 - 1)
        generators.append(torch.Generator(device=device).manual_seed(mixed))
    return generators


def _per_user(draw, shape: Sequence[int], stream: Stream) -> torch.Tensor:
    """Draw ``shape = [batch, num_users, ...]``; with a generator list, user ``u`` uses ``stream[u]``."""
    if stream is None or isinstance(stream, torch.Generator):
        return draw(tuple(shape), stream)
    num_users = shape[1]
    if len(stream) != num_users:
        raise ValueError(f"got {len(stream)} generators for {num_users} users")
    user_shape = (shape[0], *shape[2:])
    return torch.stack([draw(user_shape, gen) for gen in stream], dim=1)


def complex_normal_per_user(shape: Sequence[int], stream: Stream, device: str | torch.device = "cpu") -> torch.Tensor:
    """``CN(0, 1)`` samples of ``shape = [batch, num_users, ...]``, complex64, variance 1/2 per real."""
    from sionna.phy.utils import complex_normal

    def draw(s, gen):  # on the generator's device (CPU generators: the same draws wherever x lives)
        if gen is None:
            return complex_normal(s, device=device)
        return complex_normal(s, device=gen.device, generator=gen).to(device)

    return _per_user(draw, shape, stream)


def uniform_per_user(shape: Sequence[int], stream: Stream, device: str | torch.device = "cpu") -> torch.Tensor:
    """``U[0, 1)`` float32 samples of ``shape = [batch, num_users, ...]``."""
    from sionna.phy import config

    def draw(s, gen):
        gen = gen if gen is not None else config.torch_rng(str(device))
        return torch.rand(s, generator=gen, device=gen.device).to(device)

    return _per_user(draw, shape, stream)
