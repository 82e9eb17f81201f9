"""The wire protocol: every message round-trips; bad frames are refused cleanly."""

from __future__ import annotations

import socket
import struct
import threading

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memviz import __version__
from memviz.protocol import MAX_FRAME_BYTES, FrameError, ProtocolError, handshake
from memviz.protocol.framing import decode_payload, encode_frame, encode_payload
from memviz.protocol.messages import (
    EVENT_COLUMNS,
    MESSAGE_TYPES,
    SAMPLE_COLUMNS,
    validate_message,
)
from memviz.protocol.transport import Connection, ConnectionClosed

EXAMPLES = {
    "hello": {"protocol": 1, "memviz_version": __version__, "token": "abc", "role": "worker"},
    "start": {"spec": {"model": "gpt2-tiny", "steps": 3}},
    "stop": {},
    "run_started": {"spec": {"model": "m"}, "environment": {"torch": "2.13.0"},
                    "model": {"parameters": 12}, "t0_wall": 1700000000.5},
    "samples": {"columns": {c: np.arange(5, dtype=np.float64) * (i + 1)
                            for i, c in enumerate(SAMPLE_COLUMNS)}},
    "phase": {"t": 1.25, "step": 3, "name": "backward", "edge": "begin"},
    "step_done": {"t": 2.5, "step": 3, "loss": 4.25, "seconds": 0.5, "tokens": 1024,
                  "peak_rss_bytes": 123456789, "peak_gpu_bytes": None},
    "run_done": {"t": 9.0, "reason": "finished", "summary": {}},
    "error": {"kind": "model", "message": "no such model", "traceback": "Traceback..."},
    "log": {"t": 0.5, "level": "info", "text": "hello"},
    "strings": {"entries": [["module", 0, "transformer.h.0"], ["op", 0, "addmm.default"]]},
    "stacks": {"entries": [[0, [3, 1, 2]]]},
    "tensor_events": {"columns": {
        name: np.arange(3, dtype=np.float64 if name == "t" else np.int64)
        for name in EVENT_COLUMNS}},
    "mark": {"t": 1.5, "step": 0, "label": "after_optimizer_step",
             "live_by_category": {"parameter": 4096, "gradient": 4096}},
    "cuda_memory": {"t": 2.0, "step": 0, "reserved": 2 << 20, "allocated": 1024,
                    "segments": 1, "largest_free_block": 4096,
                    "by_category": {"parameter": 1024}, "torch_allocated": 1024,
                    "tracked_rounded": 1024},
}


def test_every_message_type_has_an_example():
    assert set(EXAMPLES) == set(MESSAGE_TYPES)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_round_trip_every_message_type(kind):
    msg = {"type": kind, **EXAMPLES[kind]}
    frame = encode_frame([msg])
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    [back] = decode_payload(frame[4:])
    validate_message(back)
    assert back.keys() == msg.keys()
    for key, value in msg.items():
        if isinstance(value, dict) and kind in ("samples", "tensor_events"):
            for col, arr in value.items():
                np.testing.assert_array_equal(back[key][col], arr)
                assert back[key][col].dtype == arr.dtype
        else:
            assert back[key] == value


def test_arrays_keep_dtype_and_values():
    arrays = [np.array([1, -2, 3], dtype=np.int64), np.array([0.5, 2.5], dtype=np.float32),
              np.array([7, 255], dtype=np.uint8)]
    [back] = decode_payload(encode_frame([{"type": "x", "a": arrays}])[4:])
    for sent, got in zip(arrays, back["a"], strict=True):
        assert got.dtype == sent.dtype
        np.testing.assert_array_equal(got, sent)


def test_unknown_array_dtype_code_is_refused():
    bad = msgpack.packb([{"a": msgpack.ExtType(1, bytes([99]) + b"\0" * 8)}])
    with pytest.raises(FrameError, match="dtype code"):
        decode_payload(bad)


def test_ragged_array_bytes_are_refused():
    bad = msgpack.packb([{"a": msgpack.ExtType(1, bytes([1]) + b"\0" * 7)}])
    with pytest.raises(FrameError, match="whole number"):
        decode_payload(bad)


def test_unknown_extension_type_is_refused():
    with pytest.raises(FrameError, match="extension"):
        decode_payload(msgpack.packb([{"a": msgpack.ExtType(42, b"zz")}]))


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_garbage_payload_raises_frame_error_only(data):
    try:
        messages = decode_payload(data)
    except FrameError:
        return
    assert isinstance(messages, list)


@pytest.mark.parametrize("msg,problem", [
    ({"type": "nonsense"}, "unknown message type"),
    ({"type": "phase", "t": 1.0, "step": 1, "name": "forward"}, "lacks field 'edge'"),
    ({"type": "phase", "t": "soon", "step": 1, "name": "forward", "edge": "begin"},
     "wrong kind"),
    ({"type": "phase", "t": 1.0, "step": 1, "name": "forward", "edge": "middle"},
     "begin or end"),
    ({"type": "samples", "columns": {"t": np.zeros(3), "rss": np.zeros(2)}}, "one length"),
    ({"type": "samples", "columns": {"t": np.zeros(3), "secrets": np.zeros(3)}}, "unknown"),
    ({"type": "tensor_events", "columns": {"t": np.zeros(2)}}, "exactly the event columns"),
    ({"type": "strings", "entries": [["passwords", 0, "x"]]}, "table, id, text"),
    ({"type": "strings", "entries": [["op", -1, "x"]]}, "table, id, text"),
    ({"type": "stacks", "entries": [[0, ["frame"]]]}, "frame ids"),
    ({"type": "step_done", "t": 1.0, "step": True, "loss": 1.0, "seconds": 1.0, "tokens": 1,
      "peak_rss_bytes": 1, "peak_gpu_bytes": None}, "wrong kind"),
    ("not a map", "must be a map"),
])
def test_invalid_messages_are_refused(msg, problem):
    with pytest.raises(ProtocolError, match=problem):
        validate_message(msg)


def test_oversized_frame_is_refused_on_send():
    huge = {"type": "log", "t": 0.0, "level": "info", "text": "x" * (MAX_FRAME_BYTES + 1)}
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame([huge])


def _pair() -> tuple[Connection, socket.socket]:
    a, b = socket.socketpair()
    return Connection(a), b


def test_oversized_length_header_is_refused_without_reading_it():
    conn, raw = _pair()
    raw.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameError, match="exceeds the maximum"):
        conn.receive()


def test_truncated_frame_is_refused():
    conn, raw = _pair()
    frame = encode_frame([{"type": "stop"}])
    raw.sendall(frame[:-2])
    raw.close()
    with pytest.raises(FrameError, match="truncated"):
        conn.receive()


def test_clean_close_between_frames_is_not_an_error():
    conn, raw = _pair()
    raw.sendall(encode_frame([{"type": "stop"}]))
    raw.close()
    assert conn.receive() == [{"type": "stop"}]
    with pytest.raises(ConnectionClosed):
        conn.receive()


def test_invalid_message_in_a_valid_frame_is_refused():
    conn, raw = _pair()
    raw.sendall(encode_frame([{"type": "launch_missiles"}]))
    with pytest.raises(ProtocolError, match="unknown message type"):
        conn.receive()


def test_payload_that_is_not_a_list_of_messages_is_refused():
    with pytest.raises(FrameError, match="list of messages"):
        decode_payload(encode_payload({"type": "stop"}))  # type: ignore[arg-type]


def _handshake_pair(token_a: str, token_b: str, version_b: int = handshake.PROTOCOL_VERSION):
    a, b = socket.socketpair()
    ca, cb = Connection(a), Connection(b)
    result: dict = {}

    def side_b() -> None:
        hello = handshake.hello(token_b, "controller")
        hello["protocol"] = version_b
        cb.send([hello])
        try:
            result["b_got"] = cb.receive()
        except Exception as exc:
            result["b_error"] = exc

    thread = threading.Thread(target=side_b)
    thread.start()
    try:
        return handshake.perform(ca, token_a, "worker")
    finally:
        thread.join(5)


def test_handshake_accepts_matching_token_and_version():
    peer = _handshake_pair("secret", "secret")
    assert peer["role"] == "controller"
    assert peer["memviz_version"] == __version__


def test_handshake_refuses_wrong_token():
    with pytest.raises(ProtocolError, match="wrong token"):
        _handshake_pair("secret", "guess")


def test_handshake_refuses_other_protocol_version():
    with pytest.raises(ProtocolError, match="protocol version mismatch"):
        _handshake_pair("secret", "secret", version_b=99)


def test_frames_of_splits_a_burst_into_frames_under_the_target():
    from memviz.protocol.framing import frames_of, pack_message

    big = {"type": "log", "t": 0.0, "level": "info", "text": "x" * 100_000}
    packed = pack_message(big)
    frames = frames_of([packed] * 50, target_bytes=1_000_000)
    per_frame = 1_000_000 // len(packed)  # 9: each message is a little over 100 kB
    assert len(frames) == -(-50 // per_frame)
    assert all(len(f) <= 1_000_000 + 16 for f in frames)
    decoded = [m for f in frames for m in decode_payload(f[4:])]
    assert decoded == [big] * 50
    assert all(struct.unpack(">I", f[:4])[0] == len(f) - 4 for f in frames)


def test_a_single_message_too_large_for_any_frame_is_refused():
    from memviz.protocol.framing import frames_of, pack_message

    huge = {"type": "log", "t": 0.0, "level": "info", "text": "x" * MAX_FRAME_BYTES}
    with pytest.raises(FrameError, match="cannot fit"):
        frames_of([pack_message(huge)])
