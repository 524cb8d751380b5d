"""The live stream's queues: a slow client cannot hold memory."""

from __future__ import annotations

from hub.api.stream import Broadcaster, frame


def test_a_slow_client_is_told_to_resync_and_dropped() -> None:
    hub = Broadcaster(queue_size=4)
    slow, quick = hub.subscribe(), hub.subscribe()
    for n in range(3):
        hub.publish("sensors", {"n": n})
        quick.queue.get_nowait()
    hub.publish("sensors", {"n": 3})
    hub.publish("sensors", {"n": 4})  # the slow client's fifth: its queue was full
    assert slow.dropped
    assert slow.queue.get_nowait()[0] == "resync"
    assert slow.queue.get_nowait()[0] == ""  # the end of its stream
    assert slow.queue.empty()
    hub.publish("sensors", {"n": 5})
    assert slow.queue.empty()  # nothing more is queued for it
    assert [quick.queue.get_nowait()[1] for _ in range(3)] == [b'{"n":3}', b'{"n":4}', b'{"n":5}']
    assert hub.resyncs == 1


def test_close_ends_every_stream() -> None:
    hub = Broadcaster(queue_size=2)
    sub = hub.subscribe()
    hub.publish("a", {})
    hub.close()
    assert sub.queue.get_nowait()[0] == ""


def test_frame() -> None:
    assert frame("incident", b'{"a":1}') == b'event: incident\ndata: {"a":1}\n\n'
