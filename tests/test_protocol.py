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
    "hello": {"protocol": 2, "nonce": "0" * 32, "role": "worker"},
    "proof": {"mac": "ab" * 32, "memviz_version": __version__},
    "start": {"spec": {"model": "gpt2-tiny", "steps": 3}},
    "stop": {},
    "detail": {},
    "fork": {"connect": "unix:/tmp/x.sock", "token": "t", "log": "/tmp/x.log"},
    "forked": {"pid": 1234, "started": 1700000000.0},
    "exited": {"pid": 1234, "code": 0},
    "run_started": {"spec": {"model": "m"}, "environment": {"torch": "2.13.0"},
                    "model": {"parameters": 12}, "t0_wall": 1700000000.5},
    "discovered": {"spec": {"model": "GPT2LMHeadModel", "program": "train.py"},
                   "model": {"parameters": 12}},
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
    with pytest.raises(FrameError, match=r"exceeds the \d+ allowed here"):
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


class _Recording(Connection):
    """A connection that keeps every byte it sent."""

    def __init__(self, sock) -> None:
        super().__init__(sock)
        self.sent = bytearray()

    def send_frame(self, frame: bytes) -> None:
        self.sent += frame
        super().send_frame(frame)


def _handshake_pair(token_a: str, token_b: str, role_a: str = "worker",
                    role_b: str = "controller") -> tuple[dict, dict]:
    """Both sides of a real handshake over a socket pair: (a's result, b's result),
    each the peer dict or the exception raised."""
    a, b = socket.socketpair()
    ca, cb = _Recording(a), _Recording(b)
    results: dict = {}

    def side(name, conn, token, role) -> None:
        try:
            results[name] = handshake.perform(conn, token, role, deadline_s=10)
        except Exception as exc:
            results[name] = exc
            conn.close()

    thread = threading.Thread(target=side, args=("b", cb, token_b, role_b))
    thread.start()
    side("a", ca, token_a, role_a)
    thread.join(15)
    results["sent"] = bytes(ca.sent) + bytes(cb.sent)
    results["a_sent"] = bytes(ca.sent)
    return results["a"], results["b"], results


def test_handshake_proves_both_sides_without_sending_the_token():
    token = handshake.new_token()
    a, b, seen = _handshake_pair(token, token)
    assert a == {"role": "controller", "memviz_version": __version__}
    assert b == {"role": "worker", "memviz_version": __version__}
    assert token.encode() not in seen["sent"]


def test_a_worker_refuses_a_wrong_proof_and_says_nothing_but_its_nonce():
    a, _b, seen = _handshake_pair("secret", "guess")
    assert isinstance(a, handshake.AuthenticationError)
    assert "could not prove" in str(a)
    said = decode_payload(seen["a_sent"][4:])
    assert said == [{"type": "hello", "protocol": handshake.PROTOCOL_VERSION,
                     "nonce": said[0]["nonce"], "role": "worker"}]
    assert len(seen["a_sent"]) == 4 + len(encode_payload(said))  # one frame, nothing after


def test_a_controller_refuses_a_worker_with_the_wrong_token():
    a, b, _ = _handshake_pair("guess", "secret")
    assert isinstance(b, handshake.AuthenticationError | ConnectionClosed)
    assert isinstance(a, handshake.AuthenticationError)


def test_two_controllers_or_two_workers_do_not_pair():
    a, _, _ = _handshake_pair("s", "s", role_a="controller", role_b="controller")
    assert isinstance(a, ProtocolError) and "cannot be driven" in str(a)
    a, _, _ = _handshake_pair("s", "s", role_a="worker", role_b="program")
    assert isinstance(a, ProtocolError) and "cannot be driven" in str(a)


def _peer_says(frames: list[bytes], *, role: str = "worker", deadline_s: float = 10,
               pause: float = 0.0):
    """What ``handshake.perform`` on one side makes of a scripted peer."""
    a, b = socket.socketpair()
    conn = Connection(a)

    def script() -> None:
        import time

        try:
            for frame in frames:
                b.sendall(frame)
                time.sleep(pause)
        except OSError:
            pass

    thread = threading.Thread(target=script, daemon=True)
    thread.start()
    try:
        return handshake.perform(conn, "secret", role, deadline_s=deadline_s)
    except Exception as exc:
        return exc
    finally:
        b.close()
        a.close()


def _hello(**fields) -> bytes:
    return encode_frame([{"type": "hello", "protocol": handshake.PROTOCOL_VERSION,
                          "nonce": "1" * 32, "role": "controller", **fields}])


def test_handshake_refuses_other_protocol_version():
    old = encode_frame([{"type": "hello", "protocol": 1, "memviz_version": "0.1",
                         "token": "abc", "role": "controller"}])
    result = _peer_says([old])
    assert isinstance(result, ProtocolError)
    assert "protocol version mismatch: this side speaks 3, the peer speaks 1" in str(result)


def test_a_peer_replaying_our_own_proof_is_refused():
    """A reflected proof names the wrong sender role, so it never verifies."""
    a, b = socket.socketpair()
    conn = Connection(a)
    peer = Connection(b)

    def reflector() -> None:
        (hello,) = peer.receive()
        peer.send([{**hello, "role": "controller"}])  # its own nonce back, as a controller
        # the worker waits for the controller's proof: send the one it would make itself
        mac = handshake.proof("secret", "worker", "controller", hello["nonce"], hello["nonce"])
        peer.send([{"type": "proof", "mac": mac, "memviz_version": "x"}])

    thread = threading.Thread(target=reflector, daemon=True)
    thread.start()
    with pytest.raises(handshake.AuthenticationError):
        handshake.perform(conn, "secret", "worker")
    thread.join(5)


def test_a_large_frame_before_authentication_is_refused_unread():
    header = struct.pack(">I", 32 * 1024 * 1024)
    result = _peer_says([header + b"\x80" * 1024])
    assert isinstance(result, FrameError)
    assert "allowed here" in str(result) and str(handshake.PRE_AUTH_MAX_FRAME) in str(result)


def test_a_peer_trickling_bytes_is_cut_off_at_the_deadline():
    frame = _hello()
    trickle = [frame[i:i + 1] for i in range(len(frame))]
    result = _peer_says(trickle, deadline_s=1.0, pause=0.3)
    assert isinstance(result, handshake.HandshakeTimeout)


def test_a_hello_without_a_nonce_is_refused():
    result = _peer_says([_hello(nonce="short")])
    assert isinstance(result, ProtocolError) and "nonce" in str(result)


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


def test_a_proven_peer_is_taken_at_once_not_at_the_next_poll(monkeypatch):
    """The loop that waits for connections is woken by the handshake that succeeds: with
    a poll of 30 s, the owner is still taken in well under a second's worth of work."""
    import time

    from memviz.protocol import accept

    monkeypatch.setattr(accept, "POLL_S", 30.0)
    token = handshake.new_token()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def owner() -> None:
        conn = Connection(socket.create_connection(("127.0.0.1", port)))
        handshake.perform(conn, token, "worker")

    began = time.monotonic()
    threading.Thread(target=owner, daemon=True).start()
    try:
        result = accept.accept_authenticated(server, token, "controller", timeout=60)
    finally:
        server.close()
    assert result is not None and result[1]["role"] == "worker"
    assert time.monotonic() - began < 10  # not the poll's 30 s


def test_the_waker_sees_a_socket_numbered_past_select_s_limit():
    """A long-lived window may hold over 1,024 descriptors: waiting on a socket numbered
    past ``select()``'s limit still works, and a wake ends the wait early."""
    import os
    import resource
    import time

    from memviz.protocol.waker import Waker

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("this machine allows under 1,200 open descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.dup(0) for _ in range(1100)]
    waker = Waker()
    a, b = socket.socketpair()
    try:
        assert a.fileno() > 1024
        assert not waker.wait_readable(a, 0.01)
        b.send(b"x")
        assert waker.wait_readable(a, 30)
        a.recv(1)
        waker.wake()
        began = time.monotonic()
        assert not waker.wait_readable(a, 30)  # woken, not readable
        assert time.monotonic() - began < 10
    finally:
        a.close()
        b.close()
        waker.close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
