"""The device order: which writes of one device came before which, the one home of that rule."""

from __future__ import annotations

from typing import NamedTuple

DEVICE = "device"
SERVER = "server"
ORIGINS = (DEVICE, SERVER)

# A device's events with a device_seq and those without cannot be placed against each other
# honestly (a counter says nothing about a clock), so they are two chains: nothing is ordered
# across them, and a write of one never hides a write of the other.
SEQ_LANE = "seq"
CLOCK_LANE = "clock"


class Chain(NamedTuple):
    """The writes that the chain rule orders against each other: one device, one lane."""

    device_id: str
    lane: str


class DeviceOrder(NamedTuple):
    """Where a device-made write stands in its device's own order.

    ``rank`` compares only within one ``chain``; equal ranks are a tie (neither write came first).
    Issue 18's re-stamp generation is meant to become a component of ``rank``, here and nowhere else.
    """

    chain: Chain
    rank: tuple[int, str]


def device_order(origin: str, device_id: str, device_seq: int | None, hlc: str) -> DeviceOrder | None:
    """The device order of a write, or None for a server-made write (no chain).

    With a ``device_seq`` the counter decides and the HLC only breaks a tie between two events
    sent with the same counter; without one the HLC decides.
    """
    if origin != DEVICE:
        return None
    if device_seq is None:
        return DeviceOrder(Chain(device_id, CLOCK_LANE), (0, hlc))
    return DeviceOrder(Chain(device_id, SEQ_LANE), (device_seq, hlc))

