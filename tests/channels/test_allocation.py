"""Broadcast + proportional-fair unicast allocation on a slot grid."""

import numpy as np
import pytest

from channels.allocation import BROADCAST, IDLE, ResourceAllocator, SlotGrid
from channels.link_adaptation import mcs_table, select_mcs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_slot_grid_numerology():
    grid = SlotGrid(num_prbs=51, numerology=1)
    assert grid.re_per_prb == 168 and grid.re_per_slot == 51 * 168
    assert grid.slot_duration_s == pytest.approx(0.5e-3)
    assert grid.subcarrier_spacing_hz == 30e3 and grid.bandwidth_hz == pytest.approx(51 * 12 * 30e3)
    assert SlotGrid(numerology=0, overhead_re_per_prb=12).re_per_prb == 156
    assert SlotGrid(slot_duration_s=2e-3).slot_duration_s == 2e-3


@pytest.mark.parametrize("kwargs, field", [
    ({"num_prbs": 0}, "num_prbs"),
    ({"numerology": 7}, "numerology"),
    ({"overhead_re_per_prb": 168}, "overhead_re_per_prb"),
    ({"slot_duration_s": -1.0}, "slot_duration_s"),
])
def test_slot_grid_bad_inputs(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SlotGrid(**kwargs)


def test_prbs_never_exceed_grid_and_every_user_served_early():
    grid = SlotGrid(num_prbs=24)
    allocator = ResourceAllocator(grid, 4, mode="digital")
    allocation = allocator.allocate([0.0, 6.0, 14.0, 24.0], broadcast_payload=30_000,
                                    unicast_payloads=[20_000, 20_000, 20_000, 20_000])
    owners = allocation.prb_owner
    assert owners.shape == (allocation.num_slots, 24)
    per_slot = [allocation.broadcast.prbs_per_slot[t] + sum(s.prbs_per_slot[t] for s in allocation.unicast)
                for t in range(allocation.num_slots)]
    assert max(per_slot) <= 24
    assert np.array_equal(np.array(per_slot), (owners != IDLE).sum(axis=1))
    for stream in allocation.streams:
        assert stream.num_re >= stream.num_symbols_needed > 0
        assert stream.air_time_s == pytest.approx(stream.num_slots * grid.slot_duration_s)
    # With broadcast_share 0.5 the broadcast never holds more than half the grid while unicast waits.
    assert max(allocation.broadcast.prbs_per_slot) <= 12
    # Every user with a payload gets PRBs within the first num_users + 1 slots.
    for user in range(4):
        assert (owners[:5] == user).any(), user
    assert allocation.air_time_s == pytest.approx(allocation.num_slots * grid.slot_duration_s)
    assert allocation.num_slots == max(s.num_slots for s in allocation.streams)


def test_broadcast_mcs_is_chosen_for_the_worst_user():
    allocator = ResourceAllocator(SlotGrid(num_prbs=10), 3, mode="digital")
    sinr_db = [3.0, 12.0, 21.0]
    everyone = allocator.allocate(sinr_db, broadcast_payload=5_000)
    assert everyone.broadcast.mcs == select_mcs(3.0) and everyone.broadcast.sinr_db == pytest.approx(3.0)
    subset = allocator.allocate(sinr_db, broadcast_payload=5_000, broadcast_users=[1, 2])
    assert subset.broadcast.mcs == select_mcs(12.0)
    unicast = allocator.allocate(sinr_db, unicast_payloads=[1_000, 1_000, 1_000]).unicast
    assert [s.mcs for s in unicast] == [select_mcs(s) for s in sinr_db]
    # Below the lowest threshold: lowest MCS, flagged as missing the target.
    outage = allocator.allocate([-15.0, 12.0, 21.0], broadcast_payload=5_000)
    assert outage.broadcast.mcs == mcs_table(1)[0] and not outage.broadcast.meets_target


def test_pf_scheduler_is_proportionally_fair():
    """A 25 dB user and a 0 dB user, both backlogged: PF alternates, it does not starve the weak user."""
    grid = SlotGrid(num_prbs=20)
    allocator = ResourceAllocator(grid, 2, mode="analog")
    payload = 30 * grid.re_per_slot  # 30 full slots each
    allocation = allocator.allocate([0.0, 25.0], unicast_payloads=[payload, payload])
    both_pending = allocation.prb_owner[:40]
    share_weak = (both_pending == 0).mean()
    share_strong = (both_pending == 1).mean()
    assert 0.35 <= share_weak <= 0.65 and 0.35 <= share_strong <= 0.65
    # Both are served in every window of 4 slots.
    for start in range(0, 40, 4):
        window = both_pending[start:start + 4]
        assert (window == 0).any() and (window == 1).any()
    # A max-rate scheduler would give the strong user everything first; PF gives it more only in
    # proportion: it finishes no earlier than slot 2 * 30 - 2.
    assert allocation.unicast[1].num_slots >= 58


def test_pf_memory_persists_and_resets():
    """After user 0 was served alone, the next allocation starts with user 1; reset() forgets that."""
    allocator = ResourceAllocator(SlotGrid(num_prbs=4), 2, mode="analog")
    fresh = allocator.allocate([10.0, 10.0], unicast_payloads=[4 * 168, 4 * 168])
    assert fresh.prb_owner[:, 0].tolist() == [0, 1]  # tie: lower index first
    allocator.allocate([10.0, 10.0], unicast_payloads=[8 * 168, 0])
    after_history = allocator.allocate([10.0, 10.0], unicast_payloads=[4 * 168, 4 * 168])
    assert after_history.prb_owner[:, 0].tolist() == [1, 0]
    allocator.reset()
    assert np.array_equal(allocator.allocate([10.0, 10.0], unicast_payloads=[4 * 168, 4 * 168]).prb_owner,
                          fresh.prb_owner)


def test_broadcast_uses_whole_grid_without_unicast_and_analog_units():
    grid = SlotGrid(num_prbs=10)
    allocation = ResourceAllocator(grid, 2, mode="analog").allocate([5.0, 5.0], broadcast_payload=25 * 168)
    assert allocation.broadcast.prbs_per_slot == [10, 10, 5]
    assert allocation.broadcast.payload_unit == "symbols" and allocation.broadcast.mcs is None
    assert allocation.broadcast.num_slots == 3 and (allocation.prb_owner[2, :5] == BROADCAST).all()
    assert allocation.air_time_s == pytest.approx(3 * grid.slot_duration_s)


@pytest.mark.parametrize("kwargs, field", [
    ({"sinr_db": [1.0]}, "sinr_db"),
    ({"broadcast_payload": -1}, "broadcast_payload"),
    ({"broadcast_payload": 10, "broadcast_users": [5]}, "broadcast_users"),
    ({"unicast_payloads": [1, -2]}, "unicast_payloads"),
])
def test_allocate_bad_inputs(kwargs, field):
    allocator = ResourceAllocator(SlotGrid(num_prbs=4), 2, mode="digital")
    args = {"sinr_db": [1.0, 2.0], **kwargs}
    with pytest.raises(ValueError, match=field):
        allocator.allocate(**args)


def test_allocator_bad_config():
    with pytest.raises(ValueError, match="mode"):
        ResourceAllocator(SlotGrid(), 2, mode="hybrid")
    with pytest.raises(ValueError, match="num_users"):
        ResourceAllocator(SlotGrid(), 0)
    with pytest.raises(ValueError, match="broadcast_share"):
        ResourceAllocator(SlotGrid(), 2, broadcast_share=0.0)
