"""A small CEL interpreter for the emulator: the subset CRD validation rules of this project use.

Supported: ``self``/``oldSelf``, field selection, ``has(x.f)``, string/int/bool/null literals,
``!``, ``&&``, ``||`` (short-circuit), ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, parentheses,
``size(x)``. Anything else raises :class:`CelError`, so a rule outside the subset fails loudly in the
tests instead of passing unchecked. Selecting an absent field is an evaluation error, as in CEL.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>&&|\|\||==|!=|<=|>=|[!<>().]))")


class CelError(Exception):
    """The rule is outside the supported subset, or its evaluation failed (e.g. no such key)."""


_ABSENT = object()


def _tokens(rule: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    rule = rule.strip()
    while position < len(rule):
        match = _TOKEN.match(rule, position)
        if not match or match.end() == position:
            raise CelError(f"unsupported CEL at {rule[position:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, rule: str, env: dict[str, Any]) -> None:
        self.tokens = _tokens(rule)
        self.pos = 0
        self.env = env

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise CelError("unexpected end of rule")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise CelError(f"expected {expected!r}, got {token[1]!r}")
        self.pos += 1
        return token

    # Each level returns a thunk so that && and || short-circuit like CEL.
    def parse(self) -> Any:
        value = self.or_()
        if self.pos != len(self.tokens):
            raise CelError(f"unexpected {self.peek()!r}")
        return value()

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            left = (lambda lhs, rhs: lambda: bool(lhs()) or bool(rhs()))(left, right)
        return left

    def and_(self) -> Any:
        left = self.unary()
        while self.peek() == "&&":
            self.take()
            right = self.unary()
            left = (lambda lhs, rhs: lambda: bool(lhs()) and bool(rhs()))(left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda: not inner()
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        op = self.peek()
        if op in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.primary()
            ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                   "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
            compare = ops[op]
            return lambda: compare(left(), right())
        return left

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "num":
            return lambda: int(text)
        if kind == "str":
            return lambda: text[1:-1]
        if kind != "id":
            raise CelError(f"unexpected {text!r}")
        if text in ("true", "false", "null"):
            literal = {"true": True, "false": False, "null": None}[text]
            return lambda: literal
        if text in ("has", "size"):
            self.take("(")
            if text == "has":
                path = self.path(self.take()[1])
                self.take(")")
                return lambda: self.resolve(path, missing_ok=True) is not _ABSENT
            inner = self.or_()
            self.take(")")
            return lambda: len(inner())
        path = self.path(text)
        return lambda: self.resolve(path)

    def path(self, root: str) -> list[str]:
        if root not in self.env:
            raise CelError(f"undeclared reference {root!r}")
        parts = [root]
        while self.peek() == ".":
            self.take()
            parts.append(self.take()[1])
        return parts

    def resolve(self, path: list[str], *, missing_ok: bool = False) -> Any:
        value = self.env[path[0]]
        for part in path[1:]:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif missing_ok:
                return _ABSENT
            else:
                raise CelError(f"no such key: {part}")
        return value


def evaluate(rule: str, self_value: Any, old_self: Any = _ABSENT) -> bool:
    env: dict[str, Any] = {"self": self_value}
    if old_self is not _ABSENT:
        env["oldSelf"] = old_self
    return bool(_Parser(rule, env).parse())


def is_transition_rule(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None
