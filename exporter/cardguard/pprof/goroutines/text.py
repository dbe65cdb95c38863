"""What the two text formats share: UTF-8 text, and Go's quoting of label keys and values.

debug=1 prints a goroutine's labels as ``# labels: {"k":"v"}`` (Go's ``%q``
quoting); a dump from Go 1.27 prints them in its header as ``{k: v, "k 2":
"v\\"x"}``, quoting only what needs it.
"""

from __future__ import annotations

import re

from cardguard.errors import ProfileError


def decode_text(data: bytes, source: str) -> str:
    """Return a text profile as text.

    Raises:
        ProfileError: the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(source, f"goroutine dump is not UTF-8 text (byte {exc.start})") from exc


_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_BARE = re.compile(r"[A-Za-z0-9./_]*")


def _unquote(s: str, i: int) -> tuple[str, int]:
    """Read the Go-quoted string starting at ``s[i] == '"'``; return it and the index after it.

    Reads what ``strconv.Quote`` (debug=1) and the runtime's traceback
    quoting (debug=2) write: ``\\n``-style escapes, ``\\xHH`` bytes (invalid
    UTF-8 stays visible as ``\\xHH`` text), ``\\uHHHH`` and ``\\UHHHHHHHH``.
    """
    out = bytearray()
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return out.decode("utf-8", "backslashreplace"), i + 1
        if c != "\\":
            j = i
            while j < n and s[j] not in '"\\':
                j += 1
            out += s[i:j].encode()
            i = j
            continue
        if i + 1 >= n:
            break
        e = s[i + 1]
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e]
            i += 2
        elif e in _HEX_DIGITS:
            width = _HEX_DIGITS[e]
            digits = s[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(f"bad escape at {i}")
            v = int(digits, 16)
            if e == "x":
                out.append(v)
            else:
                out += chr(v).encode("utf-8", "surrogatepass")
            i += 2 + width
        elif e in "01234567":
            digits = s[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise ValueError(f"bad escape at {i}")
            out.append(int(digits, 8) & 0xFF)
            i += 4
        else:
            raise ValueError(f"bad escape at {i}")
    raise ValueError("unterminated quoted string")


def _token(s: str, i: int) -> tuple[str, int]:
    """Read a label key or value as the traceback prints it: quoted, or bare when plain."""
    if i < len(s) and s[i] == '"':
        return _unquote(s, i)
    m = _BARE.match(s, i)
    assert m is not None  # the pattern matches the empty string
    return m.group(0), m.end()


def _expect(s: str, i: int, lit: str) -> int:
    if not s.startswith(lit, i):
        raise ValueError(f"expected {lit!r} at {i}")
    return i + len(lit)


def parse_traceback_labels(s: str) -> tuple[tuple[str, str], ...]:
    """Parse a dump header's labels, ``{handler: /api, "tenant id": "a b\\"c}"}``.

    Go quotes a key or value only when it holds anything but letters,
    digits, ``.``, ``/`` and ``_`` (an empty one is printed as nothing).
    """
    i = _expect(s, 0, "{")
    pairs: list[tuple[str, str]] = []
    while True:
        key, i = _token(s, i)
        i = _expect(s, i, ": ")
        value, i = _token(s, i)
        pairs.append((key, value))
        if s.startswith(", ", i):
            i += 2
            continue
        i = _expect(s, i, "}")
        if i != len(s):
            raise ValueError(f"unexpected text after labels at {i}")
        return tuple(sorted(pairs))


def parse_label_map(s: str) -> tuple[tuple[str, str], ...]:
    """Parse debug=1's ``{"k":"v", "k2":"v2"}`` (Go's ``%q`` quoting)."""
    i = _expect(s, 0, "{")
    pairs: list[tuple[str, str]] = []
    if s.startswith("}", i):
        return ()
    while True:
        if not s.startswith('"', i):
            raise ValueError(f"expected a quoted key at {i}")
        key, i = _unquote(s, i)
        i = _expect(s, i, ":")
        if not s.startswith('"', i):
            raise ValueError(f"expected a quoted value at {i}")
        value, i = _unquote(s, i)
        pairs.append((key, value))
        if s.startswith(", ", i):
            i += 2
            continue
        i = _expect(s, i, "}")
        if i != len(s):
            raise ValueError(f"unexpected text after labels at {i}")
        return tuple(sorted(pairs))
