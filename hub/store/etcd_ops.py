"""A batch of `Changes` as one etcd transaction.

etcd applies a transaction's operations together and refuses one whose put falls on
another put's key or inside a deleted range ("duplicate key given in txn request"), where
the store's batches apply in order (a range emptied, then a document put back into it).
`normalize` turns a batch into the operations that leave the same final state without
overlaps: the last put of each key, the ranges merged and cut around the keys put, and the
single deletes that no range covers. Pure code, property-tested against the batch's own
in-order meaning (tests/store/test_etcd_ops.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from hub.store import StoreError
from hub.store.etcd_client import b64, prefix_end

OP_OVERHEAD = 16  # bytes of protobuf framing per operation, generously
TXN_OVERHEAD = 128  # the transaction's own framing and its fence comparison


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction, on full etcd keys."""

    kind: Literal["put", "del", "range"]
    key: str
    value: bytes = b""  # a put's document
    end: str = ""  # a range's first key after it

    def request(self) -> dict[str, Any]:
        """The operation as the JSON gateway takes it."""
        if self.kind == "put":
            return {"request_put": {"key": b64(self.key), "value": b64(self.value)}}
        if self.kind == "del":
            return {"request_delete_range": {"key": b64(self.key)}}
        return {"request_delete_range": {"key": b64(self.key), "range_end": b64(self.end)}}

    def size(self) -> int:
        """Its share of the request, in bytes (as etcd counts them, before base64)."""
        return len(self.key.encode()) + len(self.value) + len(self.end.encode()) + OP_OVERHEAD


def space_prefix(prefix: str, space: str) -> str:
    """Where a space's documents begin; StoreError for a space name the layout cannot hold."""
    if not space or "/" in space or space.startswith("_"):
        raise StoreError(f"space {space!r}: a space is a name without '/' that does not begin '_'")
    return f"{prefix}{space}/"


def normalize(prefix: str, batches: Iterable[Iterable[tuple[str, str, str, Any]]]) -> list[Op]:
    """The batches' changes, in order, as operations that etcd takes in one transaction."""
    puts: dict[str, bytes] = {}
    dels: set[str] = set()
    ranges: list[tuple[str, str]] = []
    for changes in batches:
        for op, space, key, value in changes:
            start = space_prefix(prefix, space)
            if op == "put":
                puts[start + key] = value
                dels.discard(start + key)
            elif op == "del":
                puts.pop(start + key, None)
                dels.add(start + key)
            else:
                low = start + key
                high = prefix_end(start) if value is None else start + value + "\0"
                if low >= high:
                    continue
                for k in [k for k in puts if low <= k < high]:
                    del puts[k]
                dels = {k for k in dels if not low <= k < high}
                ranges.append((low, high))
    merged = _merge(ranges)
    put_keys = sorted(puts)
    out = [Op("range", low, end=high) for r in merged for low, high in _cut(*r, put_keys)]
    out.extend(Op("del", k) for k in sorted(dels) if not _covered(k, merged))
    out.extend(Op("put", k, puts[k]) for k in put_keys)
    return out


def request_bytes(ops: list[Op]) -> int:
    """The size of a transaction of these operations, as etcd's request limit counts it."""
    return TXN_OVERHEAD + sum(op.size() for op in ops)


def _merge(ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _cut(low: str, high: str, keys: list[str]) -> list[tuple[str, str]]:
    """[low, high) without the given keys (sorted), as ranges."""
    pieces = []
    start = low
    for key in keys[bisect.bisect_left(keys, low) : bisect.bisect_left(keys, high)]:
        if start < key:
            pieces.append((start, key))
        start = key + "\0"
    if start < high:
        pieces.append((start, high))
    return pieces


def _covered(key: str, merged: list[tuple[str, str]]) -> bool:
    i = bisect.bisect_right(merged, (key, "\U0010ffff")) - 1
    return i >= 0 and merged[i][0] <= key < merged[i][1]
