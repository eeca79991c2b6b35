"""The channels of a run, built in one place: the scenario's link-level channel (the engine and the
digital chains) and the semantic codec's per-token channel (``eval`` and stage-3 training).

Stream ids: the physical layer of user ``u`` draws from
:func:`channels.randomness.user_generators` streams :data:`UNICAST_STREAM` (its own stream) and
:data:`BROADCAST_STREAM` (its reception of the broadcast), and :data:`REPEAT_STREAM` (second
receptions of repeated symbols), recreated for every sweep point, system and sharing variant, so
variants and points see common random numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.scenario import Scenario

__all__ = ["UNICAST_STREAM", "BROADCAST_STREAM", "REPEAT_STREAM", "SEMANTIC_CHANNELS", "build_channel", "semantic_channel", "channel_set"]

#: ``user_generators`` stream ids of the physical layer.
UNICAST_STREAM = 101
BROADCAST_STREAM = 102
REPEAT_STREAM = 103  # second receptions of repeated symbols (adaptation.repeat), apart from UNICAST_STREAM
#: Channels the semantic codec is trained and scored on (``eval --channel``, ``stages.joint.channels``).
SEMANTIC_CHANNELS = ("awgn", "rayleigh")


def semantic_channel(name: str, coherence_symbols: int | None = None):
    """The codec's channel: AWGN, or flat Rayleigh fading constant over ``coherence_symbols``
    symbols (None: over each transmitted row), MMSE-equalised (analog semantics, as in stage 3).
    ValueError naming the known channels otherwise."""
    from channels.flat import AWGNChannel, RayleighBlockFadingChannel

    if name == "awgn":
        return AWGNChannel(equalizer="mmse")
    if name == "rayleigh":
        return RayleighBlockFadingChannel(coherence_symbols=coherence_symbols, equalizer="mmse")
    raise ValueError(f"unknown channel {name!r}; channels are {', '.join(SEMANTIC_CHANNELS)}")


def channel_set(names, equalizer: str) -> dict:
    """Name -> :func:`channels.registry.make_channel` block with ``equalizer``, one per distinct name
    (the channels the baselines are trained and scored on)."""
    from channels.registry import make_channel

    return {name: make_channel(name, equalizer=equalizer) for name in dict.fromkeys(names)}


def build_channel(scenario: Scenario, symbols_per_token: int, equalizer: str | None = None):
    """The scenario's channel block, its resolved parameters and the user drop (or None).

    Adds ``equalizer: mmse`` and, for rayleigh/rician, ``coherence_symbols = c`` (one fade per
    token) when not given. ``equalizer`` overrides the scenario's (the digital chains need
    ``"zf"``). ValueError (one line) on a bad parameter.
    """
    from channels.randomness import user_generators
    from channels.registry import DROP_STREAM, channel_parameters, make_channel

    name = scenario.channel.name
    params = dict(scenario.channel.params)
    accepted = channel_parameters(name)
    if "equalizer" in accepted:
        params.setdefault("equalizer", "mmse")
        if equalizer is not None:
            params["equalizer"] = equalizer
    if name in ("rayleigh", "rician"):
        params.setdefault("coherence_symbols", symbols_per_token)
    placement = scenario.placement
    drop = None
    if name in ("umi", "uma"):
        channel = make_channel(name, num_users=scenario.num_users, seed=scenario.seed,
                               carrier_frequency=placement.carrier_frequency_hz, max_speed=placement.max_speed_mps,
                               **params)
        drop = channel.drop
    else:
        channel = make_channel(name, **params)
        if placement.mode == "drop":
            from channels.topology import drop_users

            generator = user_generators(scenario.seed, 2, stream_id=DROP_STREAM)[0]
            drop = drop_users(placement.scenario, scenario.num_users, generator=generator,
                              carrier_frequency=placement.carrier_frequency_hz, max_speed=placement.max_speed_mps)
    return channel, params, drop
