"""Tickets the hub signs for the relay, and rendezvous hashing of cameras over relays."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.live.tickets import TicketError, check, relay_for, sign

SECRET = "s3cret"


def test_a_ticket_allows_its_purpose_on_its_camera_until_it_expires() -> None:
    ticket = sign(SECRET, "view", "cam-1", 1_000)
    check(SECRET, ticket, "view", "cam-1", now=999.0)
    with pytest.raises(TicketError, match="not for view on camera cam-2"):
        check(SECRET, ticket, "view", "cam-2", now=999.0)
    with pytest.raises(TicketError, match="not for warm on camera cam-1"):
        check(SECRET, ticket, "warm", "cam-1", now=999.0)
    with pytest.raises(TicketError, match="expired"):
        check(SECRET, ticket, "view", "cam-1", now=1_001.0)


def test_forged_and_malformed_tickets_are_refused() -> None:
    ticket = sign(SECRET, "view", "cam-1", 1_000)
    with pytest.raises(TicketError, match="not for view"):
        check("another secret", ticket, "view", "cam-1", now=0.0)
    later = "2000." + ticket.partition(".")[2]  # the expiry moved on, the signature kept
    with pytest.raises(TicketError, match="not for view"):
        check(SECRET, later, "view", "cam-1", now=0.0)
    for bad in ("", "abc", "1000", "x.y"):
        with pytest.raises(TicketError, match="ask the hub"):
            check(SECRET, bad, "view", "cam-1", now=0.0)


def test_rendezvous_spreads_cameras_and_moves_only_a_removed_relays_cameras() -> None:
    relays = [f"http://relay-{i}:8081" for i in range(4)]
    cameras = [f"cam-{i}" for i in range(4000)]
    before = {c: relay_for(c, relays) for c in cameras}
    load = Counter(before.values())
    assert min(load.values()) > 800, load  # about 1000 each
    after = {c: relay_for(c, relays[:3]) for c in cameras}
    moved = [c for c in cameras if before[c] != after[c]]
    assert moved
    assert all(before[c] == relays[3] for c in moved)


@given(st.text(min_size=1, max_size=40), st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_the_choice_depends_on_the_relays_not_their_order(camera: str, relays: list[str]) -> None:
    assert relay_for(camera, relays) == relay_for(camera, list(reversed(relays)))
    assert relay_for(camera, relays) in relays
