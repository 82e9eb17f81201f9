"""Write a PyTorch memory snapshot of any size, streamed, shaped as torch writes one.

``torch.cuda.memory._dump_snapshot`` pickles (protocol 4) a map whose keys are shared
string objects (memoized once, then memo references), whose trace entries each hold
a frames list of memo references to shared frame maps (torch symbolizes each
distinct frame once). Building such a structure in Python to pickle it would need
the RAM the reader is meant to save, so this writes the same opcodes directly; the
small case is checked against ``pickle.loads`` in the tests.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

BATCH = 1000  # items between a MARK and its APPENDS, as pickle writes them


class _Ops:
    def __init__(self, f) -> None:
        self.f = f
        self.memo = 0
        self.out: list[bytes] = []
        self.shared: dict[str, int] = {}  # shared strings → memo slot

    def write(self, raw: bytes) -> None:
        self.out.append(raw)

    def flush(self) -> None:
        self.f.write(b"".join(self.out))
        self.out.clear()

    def memoize(self) -> int:
        self.out.append(b"\x94")
        self.memo += 1
        return self.memo - 1

    def get(self, slot: int) -> None:
        self.out.append(b"h" + bytes([slot]) if slot < 256 else b"j" + struct.pack("<I", slot))

    def text(self, value: str) -> int:
        raw = value.encode()
        head = b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else \
            b"X" + struct.pack("<I", len(raw))
        self.out.append(head + raw)
        return self.memoize()

    def shared_text(self, value: str) -> None:
        if value in self.shared:
            self.get(self.shared[value])
        else:
            self.shared[value] = self.text(value)

    def int(self, value: int) -> None:
        if 0 <= value < 256:
            self.out.append(b"K" + bytes([value]))
        elif -(1 << 31) <= value < 1 << 31:
            self.out.append(b"J" + struct.pack("<i", value))
        else:
            n = (value.bit_length() + 8) // 8
            self.out.append(b"\x8a" + bytes([n]) + value.to_bytes(n, "little", signed=True))


def write_snapshot(path: str | Path, entries: int, frames_per_entry: int = 24,
                   distinct_frames: int = 400, distinct_stacks: int = 2000,
                   live_limit: int = 200, seed: int = 0) -> dict:
    """``entries`` trace entries (allocations and frees, ~half each) on one device.
    Returns what the file holds: allocations, live bytes at the end, distinct stacks."""
    rng = random.Random(seed)
    stacks = [[rng.randrange(distinct_frames) for _ in range(frames_per_entry)]
              for _ in range(distinct_stacks)]
    live: list[tuple[int, int]] = []
    frame_slots: dict[int, int] = {}
    allocations = 0
    used_stacks: set[int] = set()
    t = 0
    with open(path, "wb") as f:
        ops = _Ops(f)
        ops.write(b"\x80\x04}")  # PROTO 4, the top map
        ops.memoize()
        ops.write(b"(")
        ops.shared_text("segments")
        ops.write(b"]")
        ops.memoize()
        ops.shared_text("device_traces")
        ops.write(b"]")  # the list of devices' traces
        ops.memoize()
        ops.write(b"]")  # device 0's trace
        ops.memoize()
        done = 0
        while done < entries:
            ops.write(b"(")
            for _ in range(min(BATCH, entries - done)):
                t += rng.randrange(1, 50)
                if len(live) > live_limit and rng.random() < 0.5:
                    addr, size = live.pop(rng.randrange(len(live)))
                    action = "free_completed"
                else:
                    addr, size = (1 << 40) + 512 * done, rng.randrange(512, 1 << 22)
                    live.append((addr, size))
                    action = "alloc"
                    allocations += 1
                ops.write(b"}")
                ops.memoize()
                ops.write(b"(")
                for key, value in (("action", action), ("addr", addr), ("size", size),
                                   ("stream", 0), ("time_us", 1_700_000_000_000_000 + t)):
                    ops.shared_text(key)
                    ops.shared_text(value) if isinstance(value, str) else ops.int(value)
                ops.shared_text("frames")
                which = rng.randrange(len(stacks))
                if action == "alloc":
                    used_stacks.add(which)
                ops.write(b"]")
                ops.memoize()
                ops.write(b"(")
                for frame in stacks[which]:
                    if frame in frame_slots:
                        ops.get(frame_slots[frame])
                        continue
                    ops.write(b"}")
                    frame_slots[frame] = ops.memoize()
                    ops.write(b"(")
                    for key, value in (("name", f"function_{frame}"),
                                       ("filename", f"/site-packages/pkg/module_{frame % 37}.py"),
                                       ("line", frame * 7 + 1)):
                        ops.shared_text(key)
                        ops.text(value) if isinstance(value, str) else ops.int(value)
                    ops.write(b"u")
                ops.write(b"eu")  # the frames appended, the entry's items set
                done += 1
            ops.write(b"e")
            ops.flush()
        ops.write(b"au.")  # the trace into the devices' list, the top map's items, STOP
        ops.flush()
    return {"allocations": allocations, "live_bytes": sum(s for _, s in live),
            "stacks": len(used_stacks)}
