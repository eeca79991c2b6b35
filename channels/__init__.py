"""Sionna-backed channel layer: fading channels, OFDM, broadcast/unicast allocation, digital chain.

Import the submodules directly (``from channels.flat import AWGNChannel``); this package ``__init__``
stays light so that importing it does not pull in Sionna.
"""
