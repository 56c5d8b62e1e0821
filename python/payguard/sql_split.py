"""Split a migration file into statements exactly as the Supabase CLI does.

The CLI stores each applied migration's statements in
`supabase_migrations.schema_migrations.statements`. payguard compares that column with the
files to find edited migrations, so it must split the way the CLI splits, quirks included:

- a `;` outside quotes, comments, dollar-quoted bodies, parentheses and BEGIN ATOMIC bodies ends
  a statement;
- each statement keeps its comments; trailing `;` and surrounding white space are trimmed;
- empty statements are dropped, but a comment-only tail is kept as a statement;
- inside parentheses, the first `)` outside quotes ends the guarded region, nested or not.

The scanner is a small state machine: each state takes the next character and the text read
so far, and returns the next state, or None to end the statement there. A state also tells how
far it may skip ahead: the characters it would only pass over (plain text, a quoted or
dollar-quoted body up to its delimiter) are not taken one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The characters that _Ready acts on; any other leaves it as it is.
_READY_STOPS = re.compile(r"""[$'"\-/\\;(cC]""")
# In a block comment, only `/` and `*` may open or close one.
_BLOCK_STOPS = re.compile(r"[/*]")


class _Text:
    """The current statement read so far: `sql[start:end]`, without copying it."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.start = 0
        self.end = 0

    def tail(self, size: int) -> str:
        return self.sql[max(self.start, self.end - size) : self.end]

    def since(self, offset: int) -> str:
        return self.sql[offset : self.end]

    def before(self, offset: int) -> str:
        return self.sql[self.start : offset]


class _State:
    def next(self, ch: str, data: _Text) -> _State | None:
        raise NotImplementedError

    def skip(self, data: _Text, index: int) -> int:
        """The index, from `index` on, of the next character that may change this state:
        `next` would leave it as it is on each character before that one."""
        return index


def _search(pattern: re.Pattern[str], data: _Text, index: int) -> int:
    found = pattern.search(data.sql, index)
    return found.start() if found else len(data.sql)


class _Ready(_State):
    """Outside any quote or comment: the next `;` ends the statement."""

    def next(self, ch: str, data: _Text) -> _State | None:
        match ch:
            case "$":
                return _Tag(data.end - 1)
            case "'" | '"':
                return _Quote(ch)
            case "-":
                return _Comment()
            case "/":
                return _Block()
            case "\\":
                return _Escape()
            case ";":
                return None
            case "(":
                return _Guarded(self, ")")
            case "c" | "C" if _ends_with_begin_atomic(data):
                return _Guarded(self, "END")
        return self

    def skip(self, data: _Text, index: int) -> int:
        return _search(_READY_STOPS, data, index)


class _Comment(_State):
    """Saw `-`: a second one opens a line comment, which no character escapes."""

    def next(self, ch: str, data: _Text) -> _State | None:
        if ch == "-":
            return _Dollar("\n")
        return _Ready().next(ch, data)


class _Block(_State):
    """Saw `/`: `/*` opens a block comment, which nests."""

    def __init__(self) -> None:
        self.depth = 0

    def next(self, ch: str, data: _Text) -> _State | None:
        window = data.tail(2)
        if window == "/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(ch, data)
        if window == "*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self

    def skip(self, data: _Text, index: int) -> int:
        return index if self.depth == 0 else _search(_BLOCK_STOPS, data, index)


class _Quote(_State):
    """Inside '…' or "…"; a doubled delimiter stays inside."""

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.closing = False

    def next(self, ch: str, data: _Text) -> _State | None:
        if self.closing:
            if ch == self.delimiter:
                self.closing = False
                return self
            return _Ready().next(ch, data)
        if ch == self.delimiter:
            self.closing = True
        return self

    def skip(self, data: _Text, index: int) -> int:
        if self.closing:
            return index
        found = data.sql.find(self.delimiter, index)
        return found if found >= 0 else len(data.sql)


class _Dollar(_State):
    """Inside a dollar-quoted body (or a line comment): only the delimiter ends it."""

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter

    def next(self, ch: str, data: _Text) -> _State | None:
        if data.tail(len(self.delimiter)) == self.delimiter:
            return _Ready()
        return self

    def skip(self, data: _Text, index: int) -> int:
        # The first character, from `index` on, that ends the delimiter (which may begin
        # before it, though not before the statement).
        size = len(self.delimiter)
        found = data.sql.find(self.delimiter, max(index - size + 1, data.start))
        return found + size - 1 if found >= 0 else len(data.sql)


class _Tag(_State):
    """Saw `$`: letters, digits and `_` up to the next `$` make a dollar-quote tag."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def next(self, ch: str, data: _Text) -> _State | None:
        if ch == "$":
            return _Dollar(data.since(self.offset))
        if ch.isalpha() or ch.isdigit() or ch == "_":
            return self
        return _Ready().next(ch, data)


class _Escape(_State):
    """Saw a backslash: the next character is taken as it is."""

    def next(self, ch: str, data: _Text) -> _State | None:
        return _Ready()


class _Guarded(_State):
    """Inside parentheses or a BEGIN ATOMIC body: `;` does not end the statement."""

    def __init__(self, inner: _State, delimiter: str) -> None:
        self.inner = inner
        self.delimiter = delimiter

    def next(self, ch: str, data: _Text) -> _State | None:
        following = self.inner.next(ch, data)
        if following is not None:
            self.inner = following
        window = data.tail(len(self.delimiter))
        if isinstance(self.inner, _Ready) and window.upper() == self.delimiter.upper():
            return _Ready()
        return self

    def skip(self, data: _Text, index: int) -> int:
        stop = self.inner.skip(data, index)
        if not isinstance(self.inner, _Ready):
            # The region can only end on the character that makes the inner state _Ready.
            return stop
        # Or on the delimiter's last character, in either case (no other character's upper
        # case ends with `)` or `D`).
        last = self.delimiter[-1]
        for ch in {last.lower(), last.upper()}:
            found = data.sql.find(ch, index, stop)
            if found >= 0:
                stop = found
        return stop


def _is_identifier_char(ch: str) -> bool:
    return ord(ch) >= 0x80 or ch.isalpha() or ch.isdigit() or ch in "_$"


def _ends_with_begin_atomic(data: _Text) -> bool:
    keyword = "ATOMIC"
    if data.tail(len(keyword)).upper() != keyword:
        return False
    offset = data.end - len(keyword)
    if offset > data.start and _is_identifier_char(data.sql[offset - 1]):
        return False
    prefix = data.before(offset).rstrip()
    if prefix[-5:].upper() != "BEGIN":
        return False
    start = len(prefix) - 5
    return start == 0 or not _is_identifier_char(prefix[start - 1])


@dataclass(frozen=True)
class Statement:
    """One statement of a file, and the 1-based line of the file on which it starts."""

    text: str
    line: int

    def line_of(self, position: int) -> int:
        """The file line of a 1-based character position inside this statement."""
        if position <= 0:
            return self.line
        return self.line + self.text[: position - 1].count("\n")


def split_statements(sql: str) -> list[Statement]:
    """The statements of `sql`, as the Supabase CLI would store them, with their lines."""
    statements: list[Statement] = []
    state: _State = _Ready()
    data = _Text(sql)
    lines = _Lines(sql)
    size = len(sql)
    index = state.skip(data, 0)
    while index < size:
        data.end = index + 1
        following = state.next(sql[index], data)
        if following is None:
            _append(statements, lines, data.start, data.end)
            data.start = data.end
            state = _Ready()
        else:
            state = following
        index = state.skip(data, index + 1)
    _append(statements, lines, data.start, size)
    return statements


class _Lines:
    """Line numbers of offsets taken in increasing order, counting each newline once."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.offset = 0
        self.line = 1

    def at(self, offset: int) -> int:
        self.line += self.sql.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _append(statements: list[Statement], lines: _Lines, start: int, end: int) -> None:
    token = lines.sql[start:end].rstrip(";")
    text = token.strip()
    if not text:
        return
    leading = len(token) - len(token.lstrip())
    statements.append(Statement(text=text, line=lines.at(start + leading)))
