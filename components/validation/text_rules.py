"""Ids and text that look valid but are not: the raw-data gate's per-value text rules.

Each ``*_issue`` function returns None for a good value, or a short description of what is
wrong with it; the description is what the gate reports as the sample value (it names
the code point, e.g. ``control character U+001B``, so an escape sequence in the data never
reaches a terminal or a log through the report). Non-string values are left to the type
rules and pass here.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterator

# Zero-width and format characters (Unicode Cf, plus fillers that render as nothing) and the
# spaces that look like a plain space but are not (NBSP and friends, line/paragraph separators).
_INVISIBLE_CHARS = ("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U0001d173-\U0001d17a"
                    "\U000e0000-\U000e0fff")
_ODD_SPACES = "\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROL_CHARS = "\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}{_ODD_SPACES}]")
CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
CONTROL_BUT_LAYOUT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # body text may hold \t \n \r
_INVISIBLE_OR_CONTROL = re.compile(f"[{_INVISIBLE_CHARS}{_CONTROL_CHARS}]")
# A UTF-8 lead byte read as Latin-1/cp1252 (Â..ô) followed by continuation bytes read the same way:
# the trace of UTF-8 text decoded with the wrong codec ('Ã©' for 'é', 'â€™' for '’').
_CP1252_HIGH = "\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u017d" \
               "\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178"
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][\u0080-\u00bf{_CP1252_HIGH}]{{1,3}}")
REPLACEMENT = "\ufffd"


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def _as_bytes(chunk: str) -> bytes | None:
    out = bytearray()
    for char in chunk:
        try:
            out += char.encode("cp1252")
        except UnicodeEncodeError:
            if ord(char) > 0xFF:
                return None
            out.append(ord(char))
    return bytes(out)


def mojibake_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, meant) of every stretch of ``text`` that is UTF-8 decoded as Latin-1/cp1252
    (what :func:`mojibake` reports; the importers repair these spans)."""
    for match in _MOJIBAKE.finditer(text):
        chunk = match.group()
        raw = _as_bytes(chunk)
        if raw is None:
            continue
        length = 2 if raw[0] < 0xE0 else 3 if raw[0] < 0xF0 else 4
        if len(raw) < length:
            continue
        try:
            meant = raw[:length].decode("utf-8")
        except UnicodeDecodeError:
            continue
        yield match.start(), match.start() + length, meant


def mojibake(text: str) -> str | None:
    """The first stretch of ``text`` that is UTF-8 decoded as Latin-1/cp1252, or None."""
    for start, end, meant in mojibake_spans(text):
        return f"mojibake {text[start:end]!r} (UTF-8 read as Latin-1/cp1252; meant {meant!r})"
    return None


def id_issue(value: object) -> str | None:
    """An id must be visible text: no surrounding whitespace, no invisible or control characters."""
    if not isinstance(value, str):
        return None
    found = CONTROL.search(value)
    if found:
        return f"control character {_code_point(found.group())}"
    found = INVISIBLE.search(value)
    if found:
        return f"invisible character {_code_point(found.group())}"
    if value != value.strip():
        return "leading or trailing whitespace"
    if not value:
        return "empty"
    return None


def text_issue(value: object, layout_allowed: bool = False) -> str | None:
    """A title or query: no control characters, no trace of a failed decoding, not blank once
    invisible and control characters are removed. ``layout_allowed``: tabs and newlines pass
    (body text)."""
    if not isinstance(value, str):
        return None
    found = (CONTROL_BUT_LAYOUT if layout_allowed else CONTROL).search(value)
    if found:
        return f"control character {_code_point(found.group())}"
    if REPLACEMENT in value:
        return "replacement character U+FFFD (text lost in a failed decoding)"
    if not _INVISIBLE_OR_CONTROL.sub("", value).strip():
        return "blank after removing invisible and control characters"
    return mojibake(value)


def canonical_id(value: object) -> object:
    """The id two ids collide on: NFKC, invisible and control characters removed, trimmed."""
    if not isinstance(value, str):
        return value
    return _INVISIBLE_OR_CONTROL.sub("", unicodedata.normalize("NFKC", value)).strip()


def normalized_query(text: object) -> object:
    """Query text as two people would type the same query: NFKC, case-folded, punctuation
    and invisible characters removed, whitespace collapsed."""
    if not isinstance(text, str):
        return text
    folded = _INVISIBLE_OR_CONTROL.sub("", unicodedata.normalize("NFKC", text)).casefold()
    spaced = "".join(" " if unicodedata.category(c).startswith("P") else c for c in folded)
    return " ".join(spaced.split())
