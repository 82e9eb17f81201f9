"""Event batches decoded a few ahead on a thread of their own: in order, the rows
read on the caller's thread, a failure raised where its batch is taken."""

from __future__ import annotations

import threading

import pytest

from memviz.snapshot.decode_ahead import AHEAD, decoded_ahead


def test_batches_come_back_in_order_decoded_on_another_thread():
    caller = threading.get_ident()
    read_on: list[int] = []
    decoded_on: list[int] = []

    def rows():
        for i in range(20):
            read_on.append(threading.get_ident())
            yield i

    def decode(i: int) -> int:
        decoded_on.append(threading.get_ident())
        return i * i

    assert list(decoded_ahead(rows(), decode)) == [(i, i * i) for i in range(20)]
    assert set(read_on) == {caller}
    assert len(set(decoded_on)) == 1 and caller not in decoded_on


def test_a_batch_that_fails_raises_where_it_is_taken_and_decoding_stops_soon_after():
    decoded: list[int] = []

    def decode(i: int) -> int:
        decoded.append(i)
        if i == 5:
            raise ValueError("batch 5 is corrupt")
        return i

    taken = []
    with pytest.raises(ValueError, match="batch 5"):
        for row, _ in decoded_ahead(range(50), decode):
            taken.append(row)
    assert taken == [0, 1, 2, 3, 4]
    assert max(decoded) <= 5 + AHEAD  # decoding stopped a few batches on, not at the end
