"""`--where EXPR` for `runner compare` / `runner best`: a small tokenizer and recursive-descent
parser (no eval). Grammar:

    expr       := term ('or' term)*
    term       := factor ('and' factor)*
    factor     := 'not' factor | '(' expr ')' | comparison
    comparison := KEY OP VALUE
    OP         := '=' | '==' | '!=' | '<' | '<=' | '>' | '>=' | '~' (regex search) | '!~'
    VALUE      := number | bare word | 'quoted' | "quoted" | null

KEY is a setting (optimizer.lr; a group's name as optimizer), a metric (best_val_acc, val_acc),
status, id or path. '=' compares numbers as numbers (lr=0.01 matches 1e-2) and anything else as
text; '<' '<=' '>' '>=' need a number and are false where the key has none. and/or/not are
case-insensitive; quote a value that is one of them or holds spaces or ()<>=!~ characters."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from runner.compare.results import Keys, ResultsError, as_number, show_value

OPS = ("<=", ">=", "!=", "==", "!~", "=", "<", ">", "~")
NUMERIC_OPS = ("<", "<=", ">", ">=")
_SPECIAL_CHARS = set("()<>=!~\"'")
KEYWORDS = ("and", "or", "not")


class WhereError(ResultsError):
    pass


@dataclass
class Tok:
    kind: str  # "(", ")", "op", "word", "str", "kw", "end"
    text: str
    pos: int  # 0-based offset in the expression


def _err(expr: str, pos: int, msg: str) -> WhereError:
    before, after = expr[:pos], expr[pos:]
    if len(before) > 40:
        before = "..." + before[-37:]
    if len(after) > 40:
        after = after[:37] + "..."
    where = f"after '{before}'" if before else "at the start"
    where += f", before '{after}'" if after else " (the end)"
    return WhereError(f"--where: {msg} at column {pos + 1}: {where}")


def tokenize(expr: str) -> list[Tok]:
    toks, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(Tok(c, c, i))
            i += 1
        elif c in "<>=!~":
            op = next((o for o in OPS if expr.startswith(o, i)), None)
            if op is None:
                raise _err(expr, i, f"unknown operator '{c}' (use =, !=, <, <=, >, >=, ~, !~)")
            toks.append(Tok("op", op, i))
            i += len(op)
        elif c in "'\"":
            j, buf = i + 1, []
            while j < n and expr[j] != c:
                if expr[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(expr[j])
                j += 1
            if j >= n:
                raise _err(expr, i, f"unterminated string starting with {c}")
            toks.append(Tok("str", "".join(buf), i))
            i = j + 1
        else:
            j = i
            while j < n and not expr[j].isspace() and expr[j] not in _SPECIAL_CHARS:
                j += 1
            word = expr[i:j]
            kind = "kw" if word.lower() in KEYWORDS else "word"
            toks.append(Tok(kind, word.lower() if kind == "kw" else word, i))
            i = j
    toks.append(Tok("end", "", n))
    return toks


class _Parser:
    def __init__(self, expr: str, keys: Keys):
        self.expr, self.keys = expr, keys
        self.toks = tokenize(expr)
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, tok: Tok, msg: str) -> WhereError:
        return _err(self.expr, tok.pos, msg)

    def parse(self):
        if self.peek().kind == "end":
            raise self.error(self.peek(), "empty expression")
        node = self.expr_()
        t = self.peek()
        if t.kind != "end":
            raise self.error(t, f"unexpected '{t.text}', expected 'and', 'or' or the end")
        return node

    def expr_(self):
        node = self.term()
        while self.peek().kind == "kw" and self.peek().text == "or":
            self.take()
            node = ("or", node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.peek().kind == "kw" and self.peek().text == "and":
            self.take()
            node = ("and", node, self.factor())
        return node

    def factor(self):
        t = self.peek()
        if t.kind == "kw" and t.text == "not":
            self.take()
            return ("not", self.factor())
        if t.kind == "(":
            self.take()
            node = self.expr_()
            if self.peek().kind != ")":
                raise self.error(self.peek(), f"expected ')' (for the '(' of column {t.pos + 1})")
            self.take()
            return node
        return self.comparison()

    def comparison(self):
        t = self.take()
        if t.kind == "end":
            raise self.error(t, "expected a comparison like key=value")
        if t.kind != "word":
            raise self.error(t, f"expected a key, got '{t.text}'")
        key = self.keys.find(t.text)
        if key is None:
            raise WhereError(
                f"{_err(self.expr, t.pos, self.keys.unknown(t.text))}; "
                f"available: {self.keys.available()}"
            )
        op = self.take()
        if op.kind != "op":
            raise self.error(
                op, f"expected an operator (=, !=, <, <=, >, >=, ~, !~) after '{t.text}'"
            )
        v = self.take()
        if v.kind not in ("word", "str"):
            raise self.error(v, f"expected a value after '{op.text}'")
        num = as_number(v.text) if v.kind == "word" else None
        if op.text in NUMERIC_OPS and num is None:
            raise self.error(v, f"'{op.text}' needs a number, got '{v.text}'")
        regex = None
        if op.text in ("~", "!~"):
            try:
                regex = re.compile(v.text)
            except re.error as e:
                raise self.error(v, f"bad regular expression '{v.text}' ({e})") from None
        return ("cmp", key, op.text, v.text, num, regex)


def _equal(value, text: str, num) -> bool:
    if value is None:
        return text.lower() in ("null", "none")
    if isinstance(value, bool):
        return text.lower() in (("true", "yes", "1") if value else ("false", "no", "0"))
    vnum = as_number(value)
    if vnum is not None and num is not None:
        return math.isclose(vnum, num, rel_tol=1e-9, abs_tol=0.0)
    shown = show_value(value)
    if isinstance(value, (list, tuple)):
        return shown.replace(" ", "") == text.replace(" ", "")
    return shown == text


def _eval(node, run) -> bool:
    kind = node[0]
    if kind == "and":
        return _eval(node[1], run) and _eval(node[2], run)
    if kind == "or":
        return _eval(node[1], run) or _eval(node[2], run)
    if kind == "not":
        return not _eval(node[1], run)
    _, key, op, text, num, regex = node
    value = run.get(key)
    if op in ("=", "=="):
        return _equal(value, text, num)
    if op == "!=":
        return not _equal(value, text, num)
    if regex is not None:
        found = value is not None and regex.search(show_value(value)) is not None
        return found if op == "~" else not found
    vnum = as_number(value)
    if vnum is None:
        return False
    return {"<": vnum < num, "<=": vnum <= num, ">": vnum > num, ">=": vnum >= num}[op]


def keys_used(node) -> list[tuple]:
    if node[0] == "cmp":
        return [node[1]]
    return [k for child in node[1:] for k in keys_used(child)]


def compile_where(expr: str, keys: Keys):
    """A predicate run -> bool for EXPR, and the keys it reads; WhereError with the column."""
    node = _Parser(expr, keys).parse()
    return (lambda run: _eval(node, run)), keys_used(node)
