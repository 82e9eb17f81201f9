"""Read a pickle of plain containers in bounded memory, and never run anything it names.

PyTorch's memory snapshots (``torch.cuda.memory._dump_snapshot``) are pickles of
dicts, lists, strings and numbers; a long run's holds millions of trace entries and
several GB. The C unpickler builds every entry as a dict and keeps them all (about
1.6 KiB of RAM an entry, with its values). This walker runs the pickle's opcodes
itself over a memory map of the file: the small parts (segments, blocks, frames)
become Python objects as usual, but the entries of a device trace are handed to a
``sink`` a batch at a time as the pickle appends them, and dropped; where the memo
kept them it keeps what the sink leaves in their place (``forget``).

An opcode that names a class or calls anything ends the walk with a
``PlainPickleError`` that says what it asked for; nothing it names is imported.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the key under which a snapshot keeps its per-device traces (lists of entries)
TRACES_KEY = "device_traces"
# the file's pages already walked are given back every this many bytes (a mapped
# file's pages count in the process's RSS while they are mapped)
RELEASE_EVERY = 8 << 20
# a real pickler puts at most 1000 items between a mark and the op that takes them
MAX_STACK = 1 << 20
MAX_INT_BYTES = 16
# What the walk may build, in units of about 100 bytes of memory: a map, list or
# tuple is one, a map's first items one more, a distinct string two. An honest
# snapshot spends more than UNIT_FLOOR_BYTES of file on each (its trace entries and
# blocks, 30 to 60), so a file that builds more (floods of empty lists, one-item maps
# or short distinct strings) is refused before it costs over about 13 bytes of memory
# a byte of file.
UNIT_FLOOR_BYTES = 8
UNIT_SLACK = 1 << 12


class PlainPickleError(ValueError):
    pass


class _SinkFailed(Exception):
    def __init__(self, error: Exception) -> None:
        self.error = error


Sink = Callable[[list, list], None]  # (the trace list, its new entries)

_BINFLOAT = struct.Struct(">d")
# after EMPTY_LIST: MEMOIZE, then memo references only, appended at once (or the one
# appended alone): how a snapshot's frames lists are written, matched in one step
_REFS_LIST = re.compile(rb"\x94(?:\((?:h.|j....)+e|(?:h.|j....)a)", re.S)
_CALLS = {
    b"c"[0]: "GLOBAL", b"\x93"[0]: "STACK_GLOBAL", b"R"[0]: "REDUCE", b"b"[0]: "BUILD",
    b"i"[0]: "INST", b"o"[0]: "OBJ", b"\x81"[0]: "NEWOBJ", b"\x92"[0]: "NEWOBJ_EX",
    b"\x82"[0]: "EXT1", b"\x83"[0]: "EXT2", b"\x84"[0]: "EXT4", b"P"[0]: "PERSID",
    b"Q"[0]: "BINPERSID",
}


def _refused(what: str) -> PlainPickleError:
    return PlainPickleError(
        f"refused: the pickle asks for {what}; a PyTorch memory snapshot holds plain "
        "containers and numbers only, so nothing in it was run")


class PlainPickleWalker:
    """One walk of one file. ``sink(trace, entries)`` gets each batch of a device
    trace's entries (``trace`` is the list they belong to, left empty)."""

    def __init__(self, path: str | Path, sink: Sink,
                 progress: Callable[[float], None] | None = None) -> None:
        """``progress(fraction)``: how much of the file is walked, every few MiB."""
        self.path = Path(path)
        self.sink = sink
        self.progress = progress
        self._memo: list[Any] = []
        # id of each container memoized since the last batch → its slot: made when a
        # sink first forgets something, dropped after the batch (never kept for all)
        self._recent: dict[int, int] | None = None
        self._batch_start = 0  # the memo's length when the last batch ended
        self._units = 0  # see UNIT_FLOOR_BYTES
        self._budget = UNIT_SLACK
        self._strings: dict[str, str] = {}
        self._ref_lists: dict[bytes, list] = {}  # see _REFS_LIST
        self._stack: list[Any] = []

    def forget(self, obj: Any, replacement: Any) -> None:
        """From a sink: where the memo holds ``obj`` (memoized since the last batch),
        hold ``replacement`` instead, so ``obj`` can be freed."""
        if self._recent is None:
            memo = self._memo
            self._recent = {id(memo[i]): i for i in range(self._batch_start, len(memo))
                            if type(memo[i]) in (list, dict)}
        slot = self._recent.get(id(obj))
        if slot is not None:
            self._memo[slot] = replacement

    def walk(self) -> Any:
        with open(self.path, "rb") as f:
            if not f.seek(0, 2):
                raise PlainPickleError("the file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                try:
                    return self._run(data)
                except _SinkFailed as failed:
                    raise failed.error from None
                except IndexError:
                    raise PlainPickleError("the pickle ends early (truncated?) or refers to "
                                           "something it never made") from None
                except (struct.error, UnicodeDecodeError, TypeError, ValueError) as exc:
                    if isinstance(exc, PlainPickleError):
                        raise
                    raise PlainPickleError(f"damaged pickle ({exc})") from None
                finally:  # what was built is let go now, whatever still refers to the walk
                    self._release()

    def _release(self) -> None:
        for built in (self._stack, self._memo, self._strings, self._ref_lists):
            built.clear()
        self._recent = None

    # -- the machine ----------------------------------------------------------------
    def _append_many(self, stack: list, mark: int) -> None:
        items = stack[mark:]
        del stack[mark:]
        target = stack[-1]
        if type(target) is not list:
            raise PlainPickleError("items appended to something that is not a list")
        if self._is_trace(stack, len(stack) - 1):
            self._stream(target, items)
        else:
            target.extend(items)

    @staticmethod
    def _is_trace(stack: list, at: int) -> bool:
        """Is stack[at] one device's trace: a list inside the list under TRACES_KEY?"""
        return at >= 2 and type(stack[at - 1]) is list and stack[at - 2] == TRACES_KEY

    def _stream(self, trace: list, items: list) -> None:
        try:
            self.sink(trace, items)
        except Exception as exc:  # the sink's own refusal, passed on as it is
            raise _SinkFailed(exc) from None
        for item in items:
            self.forget(item, None)
        self._recent = None
        self._batch_start = len(self._memo)

    def _put(self, slot: int, value: Any) -> None:
        if slot != len(self._memo):
            if slot > len(self._memo):
                raise PlainPickleError("a memo slot out of order")
            self._memo[slot] = value
            self._ref_lists.clear()  # the same bytes may now name other objects
            return
        self._memo.append(value)

    def _get(self, slot: int) -> Any:
        if not 0 <= slot < len(self._memo):
            raise PlainPickleError("a memo reference to nothing")
        return self._memo[slot]

    def _refs_list(self, raw: bytes) -> list:
        """The list that ``raw`` (a _REFS_LIST match) builds."""
        made, at = [], 2  # after MEMOIZE and MARK, or MEMOIZE alone before APPEND
        if raw[1] != 0x28:
            at = 1
        while at < len(raw) - 1:
            if raw[at] == 0x68:
                made.append(self._get(raw[at + 1]))
                at += 2
            else:
                made.append(self._get(int.from_bytes(raw[at + 1:at + 5], "little")))
                at += 5
        return made

    def _text(self, raw: bytes) -> str:
        text = raw.decode("utf-8", "surrogatepass")
        found = self._strings.get(text)
        if found is None:
            found = self._strings[text] = text
            self._spend(2)
        return found

    def _spend(self, units: int) -> None:
        self._units += units
        if self._units > self._budget:
            raise PlainPickleError(f"it builds {self._units:,} maps, lists and texts or "
                                   f"more, more than a {self.path.stat().st_size:,}-byte "
                                   "snapshot can hold")

    def _run(self, data: mmap.mmap) -> Any:
        stack = self._stack
        marks: list[int] = []
        text, memo = self._text, self._memo
        memoize = memo.append
        refs_only, ref_lists = _REFS_LIST.match, self._ref_lists
        from_bytes = int.from_bytes
        pos = released = 0
        spend = self._spend
        self._budget = UNIT_SLACK + len(data) // UNIT_FLOOR_BYTES
        while True:
            op = data[pos]
            pos += 1
            if op == 0x94:  # MEMOIZE
                memoize(stack[-1])
            elif op == 0x68:  # BINGET
                stack.append(memo[data[pos]])
                pos += 1
            elif op == 0x6A:  # LONG_BINGET
                stack.append(memo[from_bytes(data[pos:pos + 4], "little")])
                pos += 4
            elif op == 0x8C:  # SHORT_BINUNICODE
                n = data[pos]
                stack.append(text(data[pos + 1:pos + 1 + n]))
                pos += 1 + n
            elif op == 0x7D:  # EMPTY_DICT
                stack.append({})
                spend(1)
            elif op == 0x5D:  # EMPTY_LIST
                spend(1)
                refs = refs_only(data, pos)
                if refs is None:
                    stack.append([])
                    continue
                # a list of memo references only (a trace entry's frames): made once
                # for each distinct run of bytes, which names the same objects
                raw = refs.group()
                made = ref_lists.get(raw)
                if made is None:
                    made = ref_lists[raw] = self._refs_list(raw)
                stack.append(made)
                memoize(made)
                pos = refs.end()
            elif op == 0x28:  # MARK
                marks.append(len(stack))
                if len(stack) > MAX_STACK:
                    raise PlainPickleError("a pickle with more items in one place than a "
                                           "snapshot holds")
            elif op == 0x4B:  # BININT1
                stack.append(data[pos])
                pos += 1
            elif op == 0x4A:  # BININT
                stack.append(from_bytes(data[pos:pos + 4], "little", signed=True))
                pos += 4
            elif op == 0x8A:  # LONG1
                n = data[pos]
                if n > MAX_INT_BYTES:
                    raise PlainPickleError("a number too large for a snapshot")
                stack.append(from_bytes(data[pos + 1:pos + 1 + n], "little", signed=True))
                pos += 1 + n
            elif op == 0x4D:  # BININT2
                stack.append(data[pos] | data[pos + 1] << 8)
                pos += 2
            elif op == 0x75:  # SETITEMS
                mark = marks.pop()
                target = stack[mark - 1]
                if type(target) is not dict:
                    raise PlainPickleError("items set on something that is not a map")
                items = stack[mark:]
                del stack[mark:]
                if len(items) % 2:
                    raise PlainPickleError("a map with a key and no value")
                self._spend_on_items(target, items)
                for i in range(0, len(items), 2):
                    target[items[i]] = items[i + 1]
            elif op == 0x65:  # APPENDS
                self._append_many(stack, marks.pop())
                if pos - released > RELEASE_EVERY:  # what is walked is not read again
                    keep = released
                    released = pos & ~(mmap.PAGESIZE - 1)
                    data.madvise(mmap.MADV_DONTNEED, keep, released - keep)
                    if self.progress is not None:
                        self.progress(pos / len(data))
            elif op == 0x61:  # APPEND
                self._append_many(stack, len(stack) - 1)
            elif op == 0x73:  # SETITEM
                value = stack.pop()
                key = stack.pop()
                if type(stack[-1]) is not dict:
                    raise PlainPickleError("an item set on something that is not a map")
                self._spend_on_items(stack[-1], [key, value])
                stack[-1][key] = value
            elif op == 0x95:  # FRAME: only a hint for buffered readers
                pos += 8
            elif op == 0x58:  # BINUNICODE
                n = from_bytes(data[pos:pos + 4], "little")
                stack.append(text(data[pos + 4:pos + 4 + n]))
                pos += 4 + n
            elif op == 0x47:  # BINFLOAT
                stack.append(_BINFLOAT.unpack(data[pos:pos + 8])[0])
                pos += 8
            elif op == 0x4E:  # NONE
                stack.append(None)
            elif op == 0x88:  # NEWTRUE
                stack.append(True)
            elif op == 0x89:  # NEWFALSE
                stack.append(False)
            elif op == 0x71:  # BINPUT
                self._put(data[pos], stack[-1])
                pos += 1
            elif op == 0x72:  # LONG_BINPUT
                self._put(from_bytes(data[pos:pos + 4], "little"), stack[-1])
                pos += 4
            elif op == 0x29:  # EMPTY_TUPLE
                stack.append(())
            elif op == 0x85:  # TUPLE1
                spend(1)
                stack[-1:] = [(stack[-1],)]
            elif op == 0x86:  # TUPLE2
                spend(1)
                stack[-2:] = [tuple(stack[-2:])]
            elif op == 0x87:  # TUPLE3
                spend(1)
                stack[-3:] = [tuple(stack[-3:])]
            elif op == 0x74:  # TUPLE
                spend(1)
                mark = marks.pop()
                stack[mark:] = [tuple(stack[mark:])]
            elif op == 0x6C:  # LIST
                spend(1)
                mark = marks.pop()
                stack[mark:] = [stack[mark:]]
            elif op == 0x64:  # DICT
                mark = marks.pop()
                items = stack[mark:]
                if len(items) % 2:
                    raise PlainPickleError("a map with a key and no value")
                spend(1)
                self._spend_on_items({}, items)
                stack[mark:] = [dict(zip(items[::2], items[1::2], strict=True))]
            elif op == 0x30:  # POP
                if marks and marks[-1] == len(stack):
                    marks.pop()
                else:
                    stack.pop()
            elif op == 0x31:  # POP_MARK
                del stack[marks.pop():]
            elif op == 0x32:  # DUP
                stack.append(stack[-1])
            elif op == 0x8B:  # LONG4
                n = from_bytes(data[pos:pos + 4], "little")
                if n > MAX_INT_BYTES:
                    raise PlainPickleError("a number too large for a snapshot")
                stack.append(from_bytes(data[pos + 4:pos + 4 + n], "little", signed=True))
                pos += 4 + n
            elif op == 0x8D:  # BINUNICODE8
                n = from_bytes(data[pos:pos + 8], "little")
                stack.append(text(data[pos + 8:pos + 8 + n]))
                pos += 8 + n
            elif op in (0x43, 0x42, 0x8E, 0x55, 0x54):  # SHORT_BINBYTES .. BINSTRING
                width = {0x43: 1, 0x42: 4, 0x8E: 8, 0x55: 1, 0x54: 4}[op]
                n = from_bytes(data[pos:pos + width], "little")
                stack.append(bytes(data[pos + width:pos + width + n]))
                pos += width + n
            elif op in (0x70, 0x67, 0x49, 0x4C, 0x46, 0x56, 0x53):  # text-protocol ops
                line_end = data.find(b"\n", pos)
                if line_end < 0:
                    raise IndexError
                self._text_op(op, bytes(data[pos:line_end]), stack)
                pos = line_end + 1
            elif op == 0x80:  # PROTO
                if data[pos] > 5:
                    raise PlainPickleError(f"pickle protocol {data[pos]} is newer than this "
                                           "reader")
                pos += 1
            elif op == 0x2E:  # STOP
                if len(stack) != 1 or marks:
                    raise PlainPickleError("the pickle stops in the middle of an object")
                return stack[0]
            elif op in _CALLS:
                raise _refused(self._named(op, data, pos, stack))
            else:
                raise PlainPickleError(f"opcode {op:#04x} has no place in a snapshot")

    def _spend_on_items(self, target: dict, items: list) -> None:
        """A map's first items cost a unit (its table); an item keyed by anything but
        text one more (a snapshot's keys are a few texts, each counted once)."""
        units = 0 if target or not items else 1
        for key in items[::2]:
            if type(key) is not str:
                units += 1
        if units:
            self._spend(units)

    def _text_op(self, op: int, line: bytes, stack: list) -> None:
        """The protocol-0 opcodes, which end at a newline."""
        if op == 0x70:  # PUT
            self._put(int(line), stack[-1])
        elif op == 0x67:  # GET
            stack.append(self._get(int(line)))
        elif op == 0x49:  # INT ("00" and "01" are protocol 0's False and True)
            stack.append(line == b"01" if line in (b"00", b"01") else int(line))
        elif op == 0x4C:  # LONG
            stack.append(int(line.rstrip(b"L")))
        elif op == 0x46:  # FLOAT
            stack.append(float(line))
        elif op == 0x56:  # UNICODE
            stack.append(self._text(line.decode("raw-unicode-escape").encode(
                "utf-8", "surrogatepass")))
        else:  # STRING
            stack.append(line.strip(b"'\""))

    @staticmethod
    def _named(op: int, data: mmap.mmap, pos: int, stack: list) -> str:
        """What a refused opcode asked for, as module.name where the pickle says it."""
        if op == 0x63:  # GLOBAL: "module\nname\n"
            parts = bytes(data[pos:pos + 512]).split(b"\n")[:2]
            return ".".join(p.decode("utf-8", "replace")[:100] for p in parts)
        if op == 0x93 and len(stack) >= 2 and all(isinstance(s, str) for s in stack[-2:]):
            return f"{stack[-2][:100]}.{stack[-1][:100]}"
        return f"the {_CALLS[op]} opcode (a call)"
