"""Read the Go literals of a test file: strings, numbers, calls and composite literals.

Enough of Go's expression grammar to pull inputs and expectations out of the
Prometheus test files this directory's corpora come from (see extract.py):
string concatenation, composite literals (keyed or not, typed or elided),
calls, selectors, unary minus and address-of. Used by extract.py only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<raw>`[^`]*`)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<rune>'(?:[^'\\\n]|\\.)*')
  | (?P<num>(?:0[xX][0-9a-fA-F_]+
             |[0-9][0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9]+)?
             |\.[0-9]+(?:[eE][+-]?[0-9]+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>:=|\+=|\.\.\.|[-+*/&|!=<>:;,.(){}\[\]])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESC = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39}


def go_string(lit: str) -> bytes:
    """The bytes of a Go string literal (raw or interpreted)."""
    if lit.startswith("`"):
        return lit[1:-1].replace("\r", "").encode()
    body = lit[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = body[i + 1]
        if e in _ESC:
            out.append(_ESC[e])
            i += 2
        elif e == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif e in "uU":
            n = 4 if e == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + n], 16)).encode()
            i += 2 + n
        elif e in "01234567":
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"bad escape \\{e} in {lit!r}")
    return bytes(out)


@dataclass
class Tok:
    kind: str
    text: str
    pos: int


def tokens(src: str) -> list[Tok]:
    out = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise ValueError(f"cannot read Go at {src[pos : pos + 40]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Tok(kind, m.group(), pos))
        pos = m.end()
    return out


# Parsed expressions are tuples:
#   ("str", bytes) ("num", text) ("name", "a.b") ("call", fn, [args])
#   ("comp", type or None, [(key or None, value)]) ("neg", x) ("addr", x) ("add", a, b)


class Parser:
    def __init__(self, toks: list[Tok], i: int = 0) -> None:
        self.t = toks
        self.i = i

    def peek(self, k: int = 0) -> Tok:
        return self.t[self.i + k]

    def take(self, text: str | None = None) -> Tok:
        tok = self.t[self.i]
        if text is not None and tok.text != text:
            raise ValueError(f"expected {text!r}, got {tok.text!r} at {tok.pos}")
        self.i += 1
        return tok

    def expr(self) -> Any:
        left = self.unary()
        while self.peek().text in ("+", "-") and self.peek().kind == "op":
            op = self.take().text
            right = self.unary()
            left = ("add" if op == "+" else "sub", left, right)
        return left

    def unary(self) -> Any:
        tok = self.peek()
        if tok.text == "-":
            self.take()
            return ("neg", self.unary())
        if tok.text == "+":
            self.take()
            return self.unary()
        if tok.text == "&":
            self.take()
            return ("addr", self.unary())
        if tok.text == "*":
            self.take()
            return self.unary()
        return self.primary()

    def type_expr(self) -> str:
        """A type in a composite literal: []T, []*T, map[K]V, pkg.T, struct{...}."""
        parts = []
        while True:
            tok = self.peek()
            if tok.text == "[":
                self.take()
                if self.peek().text != "]":
                    self.expr()
                self.take("]")
                parts.append("[]")
            elif tok.text == "*":
                self.take()
                parts.append("*")
            elif tok.text == "map":
                self.take()
                self.take("[")
                parts.append("map[" + self.type_expr() + "]")
                self.take("]")
            elif tok.text == "struct":
                self.take()
                depth = 0
                while True:
                    t = self.take()
                    if t.text == "{":
                        depth += 1
                    elif t.text == "}":
                        depth -= 1
                        if depth == 0:
                            break
                parts.append("struct")
                return "".join(parts)
            elif tok.kind == "ident":
                name = self.take().text
                while self.peek().text == "." and self.peek(1).kind == "ident":
                    self.take()
                    name += "." + self.take().text
                parts.append(name)
                return "".join(parts)
            else:
                raise ValueError(f"not a type at {tok.pos}: {tok.text!r}")

    def composite_body(self, typ: str | None) -> Any:
        self.take("{")
        elems: list[tuple[Any, Any]] = []
        while self.peek().text != "}":
            if self.peek().text == "{":
                value = self.composite_body(None)
                key = None
            else:
                value = self.expr()
                key = None
            if self.peek().text == ":":
                self.take()
                key = value
                value = self.composite_body(None) if self.peek().text == "{" else self.expr()
            elems.append((key, value))
            if self.peek().text == ",":
                self.take()
        self.take("}")
        return ("comp", typ, elems)

    def primary(self) -> Any:
        tok = self.peek()
        if tok.kind in ("str", "raw"):
            self.take()
            x: Any = ("str", go_string(tok.text))
        elif tok.kind == "rune":
            self.take()
            x = ("num", str(go_string(tok.text.replace("'", '"'))[0]))
        elif tok.kind == "num":
            self.take()
            x = ("num", tok.text.replace("_", ""))
        elif tok.text in ("[", "map", "struct"):
            typ = self.type_expr()
            return self.composite_body(typ)
        elif tok.text == "(":
            self.take()
            x = self.expr()
            self.take(")")
        elif tok.kind == "ident":
            name = self.take().text
            x = ("name", name)
        else:
            raise ValueError(f"unexpected {tok.text!r} at {tok.pos}")
        while True:
            tok = self.peek()
            if tok.text == "." and self.peek(1).kind == "ident":
                self.take()
                attr = self.take().text
                x = ("name", x[1] + "." + attr) if x[0] == "name" else ("attr", x, attr)
            elif tok.text == "(":
                self.take()
                args = []
                while self.peek().text != ")":
                    args.append(self.expr())
                    if self.peek().text == "...":
                        self.take()
                    if self.peek().text == ",":
                        self.take()
                self.take(")")
                x = ("call", x, args)
            elif tok.text == "{" and x[0] == "name" and _looks_like_type(x[1]):
                x = self.composite_body(x[1])
            else:
                return x


def _looks_like_type(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper() or last in ("parsedEntry",)


def string_value(x: Any) -> bytes:
    """Evaluate a string expression (literals joined with +)."""
    if x[0] == "str":
        return x[1]
    if x[0] == "add":
        return string_value(x[1]) + string_value(x[2])
    if x[0] == "call" and x[1] == ("name", "string"):
        arg = x[2][0]
        if arg[0] == "name" and arg[1].startswith("model.MetricType"):
            return arg[1][len("model.MetricType") :].lower().encode()
        return string_value(arg)
    raise ValueError(f"not a string expression: {x!r}")


def find(toks: list[Tok], start: int, *texts: str) -> int:
    """The index of the next run of tokens spelling ``texts`` from ``start``, or -1."""
    n = len(texts)
    for i in range(start, len(toks) - n + 1):
        if all(toks[i + k].text == texts[k] for k in range(n)):
            return i
    return -1


def function_body(toks: list[Tok], name: str) -> tuple[int, int]:
    """Token range of the body of ``func name(...)``."""
    i = find(toks, 0, "func", name)
    if i < 0:
        raise KeyError(name)
    while toks[i].text != "{":
        i += 1
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "{":
            depth += 1
        elif toks[j].text == "}":
            depth -= 1
            if depth == 0:
                return i, j
    raise ValueError(name)
