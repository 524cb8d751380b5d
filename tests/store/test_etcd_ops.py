"""Batches as etcd transactions: the operations leave the state the batch means, in order,
and never overlap (etcd refuses a put on another put's key or inside a deleted range)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.store import Changes, StoreError
from hub.store.etcd_ops import Op, normalize, request_bytes

PREFIX = "p/"
keys = st.sampled_from(["", "a", "a\0", "ab", "b", "b0", "c", "\uac00"])
spaces = st.sampled_from(["s", "t"])
change = st.one_of(
    st.tuples(st.just("put"), spaces, keys, st.integers(0, 9)),
    st.tuples(st.just("del"), spaces, keys, st.none()),
    st.tuples(st.just("range"), spaces, keys, st.one_of(st.none(), keys)),
)


def _changes(items: list[tuple[str, str, str, Any]]) -> Changes:
    batch = Changes()
    for op, space, key, value in items:
        if op == "put":
            batch.put(space, key, value)
        elif op == "del":
            batch.delete(space, key)
        else:
            batch.delete_range(space, key, value)
    return batch


def _in_order(state: dict[str, bytes], batch: Changes) -> dict[str, bytes]:
    """What the batch means: each change applied after the one before."""
    out = dict(state)
    for op, space, key, value in batch:
        full = f"{PREFIX}{space}/{key}"
        if op == "put":
            out[full] = value  # type: ignore[assignment]
        elif op == "del":
            out.pop(full, None)
        else:
            for k in [k for k in out if k.startswith(f"{PREFIX}{space}/")]:
                rest = k[len(f"{PREFIX}{space}/") :]
                if rest >= key and (value is None or rest <= value):
                    del out[k]
    return out


def _as_etcd(state: dict[str, bytes], ops: list[Op]) -> dict[str, bytes]:
    """What etcd makes of the operations (all at once; checked not to overlap)."""
    puts = [op.key for op in ops if op.kind == "put"]
    assert len(puts) == len(set(puts)), "a key put twice"
    for op in ops:
        if op.kind == "range":
            assert not any(op.key <= k < op.end for k in puts), f"a put inside {op}"
        if op.kind == "del":
            assert op.key not in puts, f"a put on a deleted key {op}"
    out = dict(state)
    for op in ops:
        if op.kind == "range":
            for k in [k for k in out if op.key <= k < op.end]:
                del out[k]
        elif op.kind == "del":
            out.pop(op.key, None)
    out.update({op.key: op.value for op in ops if op.kind == "put"})
    return out


@given(
    st.dictionaries(st.tuples(spaces, keys), st.integers(0, 9)),
    st.lists(st.lists(change, max_size=8), min_size=1, max_size=3),
)
def test_the_operations_leave_what_the_batches_mean(
    before: dict[tuple[str, str], int], batches: list[list[tuple[str, str, str, Any]]]
) -> None:
    state = {f"{PREFIX}{s}/{k}": str(v).encode() for (s, k), v in before.items()}
    changes = [_changes(items) for items in batches]
    expected = state
    for batch in changes:
        expected = _in_order(expected, batch)
    assert _as_etcd(state, normalize(PREFIX, changes)) == expected


def test_a_document_put_back_into_an_emptied_range_cuts_the_range() -> None:
    batch = Changes().delete_range("s", "a", "c").put("s", "b", 1)
    ops = normalize(PREFIX, [batch])
    assert ops == [
        Op("range", "p/s/a", end="p/s/b"),
        Op("range", "p/s/b\0", end="p/s/c\0"),
        Op("put", "p/s/b", b"1"),
    ]
    assert request_bytes(ops) > sum(len(op.key) for op in ops)


@pytest.mark.parametrize("space", ["", "a/b", "_ha"])
def test_a_space_the_key_layout_cannot_hold_is_refused(space: str) -> None:
    with pytest.raises(StoreError, match="a space is a name without '/'"):
        normalize(PREFIX, [Changes().put(space, "k", 1)])


@given(st.lists(st.lists(change, min_size=1, max_size=8), min_size=1, max_size=4))
def test_merged_commits_stay_within_twice_their_own_sizes(
    batches: list[list[tuple[str, str, str, Any]]],
) -> None:
    """The bound the store uses to merge queued commits without normalizing each run."""
    changes = [_changes(items) for items in batches]  # the store queues no empty batch
    alone = [normalize(PREFIX, [batch]) for batch in changes]
    merged = normalize(PREFIX, changes)
    assert len(merged) <= 2 * sum(len(ops) for ops in alone)
    assert request_bytes(merged) <= 2 * sum(request_bytes(ops) for ops in alone)
