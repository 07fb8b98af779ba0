"""A compiled decoder for replay game events, equal to s2protocol's and faster.

The game events are the players' inputs, the one part every replay has and
the largest: a 20-minute 1v1 holds 30,000 - 100,000 of them, most of them
camera updates.  s2protocol decodes them by walking its type table for every
value (``BitPackedDecoder.instance`` -> ``getattr`` -> ``_struct`` -> ...
-> ``read_bits``), about 10 us per event, which made the action stream of a
busy 20-minute game take more than a second.

This module turns a protocol module's type table into Python source: one
function per event type, written straight-line with every bit read inlined
and the reader's state (byte offset, buffered byte, buffered bit count) in
local variables.  Event functions are compiled on first use, so a replay
pays only for the event types it holds.  The output is the list s2protocol's
``decode_replay_game_events`` yields, value for value and key for key (tests
compare them on real replays of many builds); damaged input raises
s2protocol's own ``TruncatedError`` / ``CorruptedError``.

Bit order (s2protocol's ``BitPackedBuffer``, big-endian mode): the bits of
each byte are consumed from its least significant end, and a value spanning
bytes has its first-read chunk as its most significant part.

:func:`decode_game_events` is the entry point; ``pipeline.replay.archive``
uses it for every game-event decode.  A protocol with a type kind this
compiler does not know (none of s2protocol's 93 bundled ones has one) is
decoded by s2protocol itself.

Wings of Liberty (builds 1.x to 2.0.7): s2protocol's protocols for these
builds declare no user id type, so s2protocol cannot decode their game
events at all.  The events carry the user id as a plain 5-bit integer
(sc2reader reads them so), and with that the protocols' own event types
decode: on the shared replays 223 of 274 such files decode to their last
loop, with event counts, camera positions, command targets, abilities and
selected unit tags equal to sc2reader's (tests/test_game_event_decoder.py).
s2protocol's 15405 tables (1.0.x) still fail; those replays stay
``unsupported_build``.
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
from types import ModuleType
from typing import Any, Callable, Iterable

from s2protocol.decoders import CorruptedError, TruncatedError

_MASKS = tuple((1 << n) - 1 for n in range(65))

#: The reader's position in generated code.  ``used`` (a variable) is a byte
#: offset into ``data``.  Where the position is known when the code is
#: written -- most of the time, as every event starts on a byte boundary --
#: it is a :class:`_Static` ``(o, k)``: byte ``used + o``, of which ``k`` low
#: bits are consumed; reads then index bytes directly.  After a value of
#: data-dependent size (a choice, an optional or array whose size is not a
#: whole number of bytes) it is ``DYNAMIC``: byte ``used``, ``k`` (a variable).
DYNAMIC = "dynamic"
#: The end "position" of generated code that always raises.
RAISES = "raises"


@dataclasses.dataclass(frozen=True)
class _Static:
    o: int
    k: int


class UnsupportedType(ValueError):
    """The protocol uses a type kind the compiler does not handle."""


class TooManyEvents(ValueError):
    """A stream holds more events than its game could (a flood of tiny,
    valid events): raised as soon as the count passes the limit, before
    their memory is spent."""


class _Writer:
    """Writes the statements that read values of a type table into variables."""

    def __init__(self, typeinfos: list):
        self.typeinfos = typeinfos
        self.lines: list[str] = []
        self._names = itertools.count()

    def name(self, prefix: str = "v") -> str:
        return f"{prefix}{next(self._names)}"

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    # -- position -----------------------------------------------------------
    def flush(self, st: _Static | str, depth: int) -> _Static | str:
        """Moves a static byte offset into ``used``."""
        if st is not DYNAMIC and st.o:
            self.emit(f"used += {st.o}", depth)
            return _Static(0, st.k)
        return st

    def dynamic(self, st: _Static | str, depth: int) -> str:
        """Switches to a run-time bit offset ``k``."""
        if st is not DYNAMIC:
            self.flush(st, depth)
            self.emit(f"k = {st.k}", depth)
        return DYNAMIC

    def align(self, st: _Static | str, depth: int) -> _Static:
        """s2protocol's ``byte_align``: skip the rest of a partly read byte."""
        if st is DYNAMIC:
            self.emit("if k:", depth)
            self.emit("used += 1", depth + 1)
            return _Static(0, 0)
        return _Static(st.o + 1, 0) if st.k else st

    # -- bit reads ----------------------------------------------------------
    def read(self, target: str, bits: int | str, st: _Static | str, depth: int,
             offset: int = 0) -> _Static | str:
        """``target = read_bits(bits) + offset``; ``bits`` a constant or a variable."""
        add = f" + {offset}" if offset else ""
        if isinstance(bits, int) and bits == 0:
            self.emit(f"{target} = {offset}", depth)
            return st
        if st is DYNAMIC or isinstance(bits, str):
            st = self.dynamic(st, depth)
            self._read_dynamic(target, bits, depth)
            if offset:
                self.emit(f"{target} += {offset}", depth)
            return DYNAMIC
        o, k = st.o, st.k

        def byte(j: int) -> str:
            return f"data[used + {o + j}]" if o + j else "data[used]"

        first = f"({byte(0)} >> {k})" if k else byte(0)
        if k + bits < 8:
            self.emit(f"{target} = ({first} & {_MASKS[bits]}){add}", depth)
            return _Static(o, k + bits)
        if k + bits == 8:
            self.emit(f"{target} = {first}{add}", depth)
            return _Static(o + 1, 0)
        rest = bits - (8 - k)
        whole, r = rest >> 3, rest & 7
        parts = [f"({first} << {rest})"]
        for j in range(1, whole + 1):
            shift = rest - 8 * j
            parts.append(f"({byte(j)} << {shift})" if shift else byte(j))
        if r:
            parts.append(f"({byte(whole + 1)} & {_MASKS[r]})")
        value = " | ".join(parts)
        self.emit(f"{target} = ({value}){add}" if offset else f"{target} = {value}", depth)
        return _Static(o + 1 + whole, r)

    def _read_dynamic(self, target: str, bits: int | str, depth: int) -> None:
        e = self.emit
        if isinstance(bits, str):
            e(f"if {bits} == 0:", depth)
            e(f"{target} = 0", depth + 1)
            e(f"elif k + {bits} < 8:", depth)
            e(f"{target} = (data[used] >> k) & MASKS[{bits}]", depth + 1)
        else:
            e(f"if k + {bits} < 8:", depth)
            e(f"{target} = (data[used] >> k) & {_MASKS[bits]}", depth + 1)
        e(f"k += {bits}", depth + 1)
        e("else:", depth)
        e(f"rem = {bits} - 8 + k", depth + 1)
        e(f"{target} = data[used] >> k", depth + 1)
        e("used += 1", depth + 1)
        e("whole = rem >> 3", depth + 1)
        e("if whole:", depth + 1)
        e("chunk = data[used:used + whole]", depth + 2)
        e("if len(chunk) != whole:", depth + 2)
        e("raise IndexError(used)", depth + 3)
        e(f"{target} = ({target} << (whole * 8)) | int.from_bytes(chunk, 'big')", depth + 2)
        e("used += whole", depth + 2)
        e("k = rem & 7", depth + 1)
        e("if k:", depth + 1)
        e(f"{target} = ({target} << k) | (data[used] & MASKS[k])", depth + 2)

    # -- values -------------------------------------------------------------
    def value(self, typeid: int, target: str, st: _Static | str, depth: int,
              stack: tuple[int, ...] = ()) -> _Static | str:
        """Statements leaving one decoded value of ``typeid`` in ``target``;
        returns the position after it."""
        if typeid >= len(self.typeinfos) or typeid in stack:
            raise UnsupportedType(f"type id {typeid}: out of range or recursive")
        stack += (typeid,)
        kind, args = self.typeinfos[typeid]
        e = self.emit
        if kind == "_int":
            return self.read(target, args[0][1], st, depth, offset=args[0][0])
        if kind == "_bool":
            st = self.read(target, 1, st, depth)
            e(f"{target} = {target} != 0", depth)
            return st
        if kind == "_null":
            e(f"{target} = None", depth)
            return st
        if kind == "_optional":
            st = self.read(target, 1, st, depth)
            return self._branches(st, depth, [
                (f"if {target}:", lambda s, d: self.value(args[0], target, s, d, stack)),
                ("else:", lambda s, d: (e(f"{target} = None", d), s)[1])])
        if kind == "_choice":
            bounds, fields = args
            tag = self.name("tag")
            st = self.read(tag, bounds[1], st, depth, offset=bounds[0])

            def branch(fname: str, ftype: int):
                def write(s, d):
                    s = self.value(ftype, target, s, d, stack)
                    e(f"{target} = {{{fname!r}: {target}}}", d)
                    return s
                return write
            arms = [(f"{'if' if i == 0 else 'elif'} {tag} == {value_tag}:", branch(*field))
                    for i, (value_tag, field) in enumerate(sorted(fields.items()))]
            arms.append(("else:", lambda s, d: (e(
                f"raise CorruptedError('choice tag %d of type {typeid}' % {tag})", d), RAISES)[1]))
            return self._branches(st, depth, arms)
        if kind == "_array":
            length = self.name("n")
            st = self.read(length, args[0][1], st, depth, offset=args[0][0])
            return self._array(args[1], target, length, st, depth, stack)
        if kind == "_bitarray":
            length, bits = self.name("n"), self.name()
            st = self.read(length, args[0][1], st, depth, offset=args[0][0])
            st = self.read(bits, length, st, depth)
            e(f"{target} = ({length}, {bits})", depth)
            return st
        if kind == "_blob":
            length = self.name("n")
            st = self.read(length, args[0][1], st, depth, offset=args[0][0])
            st = self.align(st, depth)
            start = f"used + {st.o}" if st.o else "used"
            e(f"{target} = data[{start}:{start} + {length}]", depth)
            e(f"if len({target}) != {length}:", depth)
            e("raise IndexError(used)", depth + 1)
            e(f"used += {st.o} + {length}" if st.o else f"used += {length}", depth)
            return _Static(0, 0)
        if kind == "_struct":
            return self._struct(args[0], target, st, depth, stack)
        raise UnsupportedType(f"type kind {kind}")

    def _branches(self, st, depth: int, arms) -> _Static | str:
        """if/elif/else arms from one position.  The position after them stays
        static when every arm that returns ends on the same bit offset."""
        st = self.flush(st, depth)
        bodies = []
        saved = self.lines
        for head, write in arms:
            self.lines = []
            end = write(st, depth + 1)
            bodies.append((head, self.lines, end))
        self.lines = saved
        ends = [end for _, _, end in bodies if end is not RAISES]
        if not ends:
            raise UnsupportedType("a choice whose every arm raises")
        same_k = (ends and all(end is not DYNAMIC for end in ends)
                  and len({end.k for end in ends}) == 1)
        if same_k and len({end.o for end in ends}) == 1:
            result = ends[0]
        else:
            result = _Static(0, ends[0].k) if same_k else DYNAMIC
        for head, lines, end in bodies:
            self.emit(head, depth)
            self.lines += lines or ["    " * (depth + 1) + "pass"]
            if end is RAISES or end is DYNAMIC or end == result:
                continue
            if end.o:
                self.emit(f"used += {end.o}", depth + 1)
            if result is DYNAMIC:
                self.emit(f"k = {end.k}", depth + 1)
        return result

    def _array(self, item_type: int, target: str, length: str, st, depth: int,
               stack: tuple[int, ...]) -> _Static | str:
        e = self.emit
        item = self.name()
        st = self.flush(st, depth)
        mark = len(self.lines)
        if st is not DYNAMIC:  # try a loop whose body keeps the bit offset
            e(f"{target} = []", depth)
            e(f"for _ in range({length}):", depth)
            end = self.value(item_type, item, st, depth + 1, stack)
            if end is not DYNAMIC and end.k == st.k:
                self.flush(end, depth + 1)
                e(f"{target}.append({item})", depth + 1)
                return st
            del self.lines[mark:]
            st = self.dynamic(st, depth)
        e(f"{target} = []", depth)
        e(f"for _ in range({length}):", depth)
        self.value(item_type, item, DYNAMIC, depth + 1, stack)
        e(f"{target}.append({item})", depth + 1)
        return DYNAMIC

    def _struct(self, fields, target: str, st, depth: int,
                stack: tuple[int, ...]) -> _Static | str:
        e = self.emit
        parts = []
        for fname, ftype, _tag in fields:
            var = self.name()
            st = self.value(ftype, var, st, depth, stack)
            parts.append((fname, var))
        if not any(fname == "__parent" for fname, _ in parts):
            e(f"{target} = {{{', '.join(f'{n!r}: {v}' for n, v in parts)}}}", depth)
            return st
        e(f"{target} = {{}}", depth)
        for fname, var in parts:  # s2protocol's merge of a parent struct
            if fname != "__parent":
                e(f"{target}[{fname!r}] = {var}", depth)
                continue
            e(f"if isinstance({var}, dict):", depth)
            e(f"{target}.update({var})", depth + 1)
            e("else:", depth)
            e(f"{target} = {var}" if len(fields) == 1 else f"{target}['__parent'] = {var}",
              depth + 1)
        return st


def _compile(source: str, name: str, label: str) -> Callable:
    namespace = {"MASKS": _MASKS, "TruncatedError": TruncatedError,
                 "CorruptedError": CorruptedError, "TooManyEvents": TooManyEvents}
    exec(compile(source, label, "exec"), namespace)  # noqa: S102 - generated from type tables
    return namespace[name]


def _event_reader(module: ModuleType, eventid: int, k: int) -> Callable:
    """``read(data, used, start, gameloop, userid) -> (used, event)`` for an
    event whose body starts ``k`` bits into byte ``used``; the returned
    ``used`` is byte aligned, the event has s2protocol's extra keys."""
    typeid, name = module.game_event_types[eventid]
    w = _Writer(module.typeinfos)
    st = w.align(w.value(typeid, "value", _Static(0, k), 1), 1)
    extra = {"_event": repr(name), "_eventid": str(eventid), "_gameloop": "gameloop",
             "_userid": "userid", "_bits": f"(used + {st.o} - start) * 8"}
    last = w.lines[-1]
    if last.startswith("    value = {") and last.endswith("}"):  # fold into the display
        items = ", ".join(f"{key!r}: {v}" for key, v in extra.items())
        w.lines[-1] = last[:-1] + (", " if not last.endswith("{}") else "") + items + "}"
    else:
        w.lines += [f"    value[{key!r}] = {v}" for key, v in extra.items()]
    if st.o:
        w.emit(f"used += {st.o}", 1)
    source = "\n".join(["def read(data, used, start, gameloop, userid):", *w.lines,
                        "    return used, value", ""])
    return _compile(source, "read", f"<{module.__name__} event {eventid} at bit {k}>")


class _GameEventDecoder:
    """Decodes one protocol's game events; event readers are compiled lazily,
    one per (event type, starting bit offset)."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.readers: dict[int, Callable] = {}
        self.loop = self._event_loop()

    def reader(self, eventid: int, k: int) -> Callable:
        if eventid not in self.module.game_event_types:
            raise CorruptedError(f"eventid({eventid})")
        fn = self.readers[eventid * 8 + k] = _event_reader(self.module, eventid, k)
        return fn

    def _header(self, w: _Writer, st: _Static, depth: int) -> None:
        """User id and event id from a static position, then ``k`` and the reader."""
        m = self.module
        if getattr(m, "replay_userid_typeid", None) is None:
            # Wings of Liberty: s2protocol's tables declare no user id type;
            # the user id is a plain 5-bit integer (as sc2reader reads it).
            st = w.read("user", 5, st, depth)
            w.emit("userid = {'m_userId': user}", depth)
        else:
            st = w.value(m.replay_userid_typeid, "userid", st, depth)
        st = w.value(m.game_eventid_typeid, "eventid", st, depth)
        if st is DYNAMIC:
            w.emit("read = readers.get(eventid * 8 + k) or compile_reader(eventid, k)", depth)
            return
        w.flush(st, depth)
        w.emit(f"read = readers.get(eventid * 8 + {st.k}) or compile_reader(eventid, {st.k})",
               depth)

    def _event_loop(self) -> Callable:
        """The loop over events: each starts byte aligned with its game-loop
        delta (an SVarUint32 choice), user id and event id, written out for
        each delta width so the event body starts at a known bit offset."""
        m = self.module
        w = _Writer(m.typeinfos)
        kind, args = m.typeinfos[m.svaruint32_typeid]
        if kind == "_choice" and all(m.typeinfos[t][0] == "_int" for _, t in args[1].values()):
            st = w.read("tag", args[0][1], _Static(0, 0), 2, offset=args[0][0])
            for i, (tag, (_name, ftype)) in enumerate(sorted(args[1].items())):
                w.emit(f"{'if' if i == 0 else 'elif'} tag == {tag}:", 2)
                self._header(w, w.value(ftype, "delta", st, 3), 3)
            w.emit("else:", 2)
            w.emit("raise CorruptedError('game loop delta tag %d' % tag)", 3)
        else:  # s2protocol's _varuint32_value: the first value of the choice
            st = w.value(m.svaruint32_typeid, "delta", _Static(0, 0), 2)
            w.emit("delta = next(iter(delta.values()), 0)", 2)
            self._header(w, st, 2)
        source = "\n".join([
            "def decode(data, readers, compile_reader, max_events):",
            "    events = []", "    append = events.append",
            "    size = len(data)", "    used = 0", "    gameloop = 0",
            "    while used < size:",
            "        start = used",
            *w.lines,
            "        gameloop += delta",
            "        used, event = read(data, used, start, gameloop, userid)",
            "        append(event)",
            "        if len(events) > max_events:",
            "            raise TooManyEvents('over %d game events' % max_events)",
            "    return events", ""])
        return _compile(source, "decode", f"<{m.__name__} game event loop>")

    def __call__(self, data: bytes, max_events: int) -> list[dict[str, Any]]:
        try:
            return self.loop(data, self.readers, self.reader, max_events)
        except IndexError as exc:  # a read past the end of the data
            raise TruncatedError(f"game events end inside an event (byte {exc})") from exc
        except UnsupportedType:  # an event type this compiler cannot write
            return bounded_list(self.module.decode_replay_game_events(data), max_events)


#: Decoders by protocol module name (None: not compilable, use s2protocol).
_CACHE: dict[str, _GameEventDecoder | None] = {}


def bounded_list(events: Iterable[dict[str, Any]], max_events: int) -> list[dict[str, Any]]:
    """``list(events)``, raising :class:`TooManyEvents` at event ``max_events + 1``."""
    out = list(itertools.islice(events, max_events + 1))
    if len(out) > max_events:
        raise TooManyEvents(f"over {max_events} events")
    return out


def decode_game_events(module: ModuleType, data: bytes,
                       max_events: int = sys.maxsize - 1) -> list[dict[str, Any]]:
    """Every game event of ``data`` as s2protocol's ``decode_replay_game_events``
    yields them, decoded with protocol ``module``; :class:`TooManyEvents`
    past ``max_events``."""
    name = module.__name__
    if name not in _CACHE:
        try:
            _CACHE[name] = _GameEventDecoder(module)
        except UnsupportedType:
            _CACHE[name] = None
    decoder = _CACHE[name]
    if decoder is None:
        return bounded_list(module.decode_replay_game_events(data), max_events)
    return decoder(data, max_events)
