"""A faster, bit-identical ``read_bits`` for s2protocol's bit-packed decoder.

Decoding a 20-minute game's game events with s2protocol takes ~0.7 s on one
core, half of it in ``BitPackedBuffer.read_bits``, which copies one byte per
loop iteration.  The replacement below reads whole bytes at once with
``int.from_bytes`` and takes a single-step path when the bits are already
buffered.  It produces the same values and leaves the buffer in the same
state; near the end of the data (where the original raises
``TruncatedError`` part-way through) it defers to the original, so errors are
unchanged too.  Little-endian buffers (attribute events) keep the original.

:func:`install` patches the class once per process; ``pipeline.replay.archive``
calls it, so every decode in the project goes through the same code.
tests/test_player_inputs.py checks equality with the original on real replays.
"""
from __future__ import annotations

from s2protocol import decoders

_ORIGINAL = decoders.BitPackedBuffer.read_bits
_INSTALLED = False


def read_bits(self: decoders.BitPackedBuffer, bits: int) -> int:
    if not self._bigendian:
        return _ORIGINAL(self, bits)
    nextbits = self._nextbits
    if bits == 0:
        return 0
    if bits <= nextbits:
        result = self._next & ((1 << bits) - 1)
        self._next >>= bits
        self._nextbits = nextbits - bits
        return result
    remaining = bits - nextbits
    nbytes, rest = remaining >> 3, remaining & 7
    data = self._data
    used = self._used
    if used + nbytes + (1 if rest else 0) > len(data):
        return _ORIGINAL(self, bits)  # truncated: same partial read and error
    result = (self._next & ((1 << nextbits) - 1)) << remaining if nextbits else 0
    if nbytes:
        result |= int.from_bytes(data[used:used + nbytes], "big") << rest
        used += nbytes
    if rest:
        byte = data[used]
        used += 1
        result |= byte & ((1 << rest) - 1)
        self._next = byte >> rest
        self._nextbits = 8 - rest
    else:
        self._next = 0
        self._nextbits = 0
    self._used = used
    return result


def install() -> None:
    """Use the fast ``read_bits`` for every s2protocol decoder in this process."""
    global _INSTALLED
    if not _INSTALLED:
        decoders.BitPackedBuffer.read_bits = read_bits
        _INSTALLED = True


def uninstall() -> None:
    """Restore s2protocol's own ``read_bits`` (for comparisons)."""
    global _INSTALLED
    decoders.BitPackedBuffer.read_bits = _ORIGINAL
    _INSTALLED = False
