"""Strings from replays, made safe for a terminal, a plot or a UTF-8 column.

Player names, map titles, races and file names come from the uploader, who
can put anything in them: NUL, CR/LF, ANSI and OSC escape sequences (set the
terminal's title, clear a line, move the cursor up), bidirectional
overrides, 10 KB of text, or bytes that are not UTF-8 at all.  The data keeps
the original strings; whatever shows one to a person goes through here:

* :func:`terminal_safe` for terminals and logs (progress lines, one-line
  errors, ``trainers.predict``'s summary): every control, format,
  separator or surrogate character becomes a visible escape (``\\x1b``,
  ``\\n``, ``\\u202e``), so a name can neither run commands in the terminal
  nor forge a second line, and long strings are cut;
* :func:`plot_text` for Matplotlib: the same escaping (a glyph warning
  would otherwise print the raw character), for text drawn with
  ``parse_math=False``, so ``$`` never starts mathtext;
* :func:`storable` for UTF-8 columns: a file name with bytes that are not
  UTF-8 (Python's surrogate escapes) keeps those bytes as ``\\xNN`` text
  instead of failing the whole Parquet write.
"""
from __future__ import annotations

import unicodedata

#: Longest text shown whole; longer strings are cut with a count of the rest.
MAX_SHOWN_CHARS = 200
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    return _escape_unnamed(char)


def _escape_unnamed(char: str) -> str:
    if char.isascii() and char.isprintable():
        return char
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _cut(value: object, limit: int) -> tuple[str, str]:
    text = value if isinstance(value, str) else str(value)
    if limit and len(text) > limit:
        return text[:limit], f"...[{len(text) - limit} more characters]"
    return text, ""


def terminal_safe(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``value`` as one line of inert text: backslashes doubled (so that an
    escape in the output is never the string's own text), control and
    invisible characters escaped, at most ``limit`` characters of the
    original (the rest counted)."""
    text, cut = _cut(value, limit)
    return "".join(map(_escape, text)) + cut


def plot_text(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """Text for a Matplotlib label or title (draw it with
    ``parse_math=False``): control and invisible characters escaped as for a
    terminal, backslashes and ``$`` left as they are (no mathtext reads
    them)."""
    text, cut = _cut(value, limit)
    return "".join(_escape(c) if c in "\n\r\t" else _escape_unnamed(c) for c in text) + cut


def storable(value: str) -> str:
    """``value`` as valid UTF-8 text: surrogate escapes (bytes of a file
    name that were not UTF-8) become ``\\xNN``; anything else is unchanged."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:          # a lone surrogate from JSON, say
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return value
