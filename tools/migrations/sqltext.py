"""Just enough SQL lexing for build-time checks: split a migration into statements, read their heads.

SQLite itself decides where a statement ends (`apsw.complete`, i.e. sqlite3_complete), so triggers,
strings and comments containing semicolons split correctly. The lexer below only skips comments and
groups tokens so a statement's leading keywords can be classified.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import apsw

BREAKPOINT = "--> statement-breakpoint"

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a migration file and the 1-based line it starts on."""

    text: str
    line: int


def tokens(sql: str) -> list[str]:
    """Tokens with comments and whitespace dropped; bare words upper-cased, quoted names unquoted."""
    out: list[str] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        value = match.group()
        if kind in ("space", "line_comment", "block_comment"):
            continue
        if kind == "word":
            out.append(value.upper())
        elif kind == "quoted":
            out.append(value[1:-1] if len(value) >= 2 else value)
        else:
            out.append(value)
    return out


def requalify(expression: str, table: str, new_table: str, *, quote_name: Callable[[str], str]) -> str:
    """`expression` with every `table.` qualifier (any quoting, any case) renamed to `new_table.`.

    A CHECK may name its own table (drizzle-kit writes `CHECK ("products"."price" >= 0)`); copied
    verbatim into a rebuild's `__new_products` it names a table that is not the one being created
    and SQLite refuses it. Drizzle Kit rewrites the qualifier with plain text replacement; this does
    it on tokens, so a string literal or a longer name that merely contains the table name is left
    alone. ALTER TABLE ... RENAME TO rewrites the qualifier back (SQLite >= 3.25).
    """
    wanted = table.casefold()
    found = [
        m
        for m in _TOKEN.finditer(expression)
        if m.lastgroup not in ("space", "line_comment", "block_comment")
    ]
    out: list[str] = []
    position = 0
    for here, after in itertools.pairwise(found):
        if after.group() != "." or _identifier(here).casefold() != wanted:
            continue
        out.append(expression[position : here.start()])
        out.append(quote_name(new_table))
        position = here.end()
    out.append(expression[position:])
    return "".join(out)


def _identifier(match: re.Match[str]) -> str:
    """The name a token stands for when it is used as a qualifier; "" for anything else."""
    text = match.group()
    if match.lastgroup == "word":
        return text
    if match.lastgroup == "quoted":
        if text[0] == "[":
            return text[1:-1]
        return text[1:-1].replace(text[0] * 2, text[0])
    if match.lastgroup == "string":  # SQLite reads 'name'.column as an identifier (a misfeature)
        return text[1:-1].replace("''", "'")
    return ""


def split_statements(sql: str) -> list[Statement]:
    """Split a Drizzle Kit migration file into statements, keeping each one's first line number.

    Drizzle separates statements with `--> statement-breakpoint`, sometimes on the statement's own
    line; files written with breakpoints off (or by hand) hold several statements per chunk, so every
    chunk is split again where SQLite says a statement is complete. Comment-only text is dropped.
    """
    statements: list[Statement] = []
    line = 1
    for chunk in sql.split(BREAKPOINT):
        start = 0
        for end in range(len(chunk)):
            if chunk[end] == ";" and apsw.complete(chunk[start : end + 1]):
                _collect(statements, chunk[start : end + 1], line + chunk.count("\n", 0, start))
                start = end + 1
        _collect(statements, chunk[start:], line + chunk.count("\n", 0, start))
        line += chunk.count("\n")
    return statements


def _collect(statements: list[Statement], text: str, line: int) -> None:
    first = _first_token_offset(text)
    if first is None or text[first:].strip() == ";":
        return
    body = text[first:].strip()
    line += text.count("\n", 0, first)
    statements.append(Statement(body if body.endswith(";") else body + ";", line))


def _first_token_offset(sql: str) -> int | None:
    """Offset of the first token that is neither whitespace nor a comment, None if there is none."""
    for match in _TOKEN.finditer(sql):
        if match.lastgroup not in ("space", "line_comment", "block_comment"):
            return match.start()
    return None
