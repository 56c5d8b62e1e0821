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
so far, and returns the next state, or None to end the statement there.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class _Dollar(_State):
    """Inside a dollar-quoted body (or a line comment): only the delimiter ends it."""

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter

    def next(self, ch: str, data: _Text) -> _State | None:
        if data.tail(len(self.delimiter)) == self.delimiter:
            return _Ready()
        return self


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
    for index, ch in enumerate(sql):
        data.end = index + 1
        following = state.next(ch, data)
        if following is None:
            _append(statements, sql, data.start, data.end)
            data.start = data.end
            state = _Ready()
        else:
            state = following
    _append(statements, sql, data.start, len(sql))
    return statements


def _append(statements: list[Statement], sql: str, start: int, end: int) -> None:
    token = sql[start:end].rstrip(";")
    text = token.strip()
    if not text:
        return
    leading = len(token) - len(token.lstrip())
    line = sql.count("\n", 0, start + leading) + 1
    statements.append(Statement(text=text, line=line))
