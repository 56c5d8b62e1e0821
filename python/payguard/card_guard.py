"""The character classes of the card-number guard, from the Unicode data Python carries.

The guard (`private.holds_card_number`) reads a card number wherever digits of any script
make 13 to 19 digits that pass Luhn, with short runs of punctuation, symbols or white space
between their groups and invisible characters anywhere. Which character is which comes from
here, not from the database's locale (whose character classes depend on the collation
provider and its version):

- a **digit** is any character with a digit value (`unicodedata.digit`): the decimal digits
  of every script (category Nd) and the other digits (superscripts, circled digits);
- an **ignorable** character is zero-width: format characters (Cf), marks (Mn, Mc, Me) and
  the default-ignorable code points (`DEFAULT_IGNORABLE`), such as the Hangul fillers;
- a **word** character ends a run of digits: the letters (L*) and the numbers that are not
  digits (Nl, No);
- a **space** is white space (Python's `str.isspace`, and categories Zs, Zl, Zp);
- everything else separates digit groups: punctuation, symbols, other control characters,
  private-use, surrogate and unassigned code points.

`python -m payguard.card_guard` prints the SQL the migration was written from; the tests hold
the database's classes to what this module computes.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_CODE_POINT = 0x10FFFF

# DerivedCoreProperties.txt, Default_Ignorable_Code_Point (Unicode 14.0 and 15.0): code points
# that render as nothing, whatever their general category (the Hangul fillers are letters).
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _code_points() -> Iterator[int]:
    # Surrogates are not characters a text value can hold.
    return (c for c in range(MAX_CODE_POINT + 1) if not 0xD800 <= c <= 0xDFFF)


_DEFAULT_IGNORABLE_POINTS = frozenset(
    code_point for low, high in DEFAULT_IGNORABLE for code_point in range(low, high + 1)
)


def _default_ignorable(code_point: int) -> bool:
    return code_point in _DEFAULT_IGNORABLE_POINTS


@dataclass(frozen=True)
class Classes:
    """Code points of each class, each sorted."""

    digits: tuple[int, ...]
    ignorable: tuple[int, ...]
    word: tuple[int, ...]
    space: tuple[int, ...]


@functools.cache
def classes() -> Classes:
    """The classes, from a pass over every code point: made once per process."""
    digits: list[int] = []
    ignorable: list[int] = []
    word: list[int] = []
    space: list[int] = []
    for code_point in _code_points():
        char = chr(code_point)
        category = unicodedata.category(char)
        if unicodedata.digit(char, None) is not None:
            digits.append(code_point)
        elif category in ("Cf", "Mn", "Mc", "Me") or _default_ignorable(code_point):
            ignorable.append(code_point)
        elif category[0] == "L" or category in ("Nl", "No"):
            word.append(code_point)
        elif char.isspace() or category in ("Zs", "Zl", "Zp"):
            space.append(code_point)
    return Classes(tuple(digits), tuple(ignorable), tuple(word), tuple(space))


def digit_values() -> list[tuple[int, int]]:
    """(code point, digit value) of every digit character."""
    return [(c, unicodedata.digit(chr(c))) for c in classes().digits]


def ranges(code_points: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive code points merged into (first, last) ranges."""
    merged: list[tuple[int, int]] = []
    for code_point in code_points:
        if merged and merged[-1][1] == code_point - 1:
            merged[-1] = (merged[-1][0], code_point)
        else:
            merged.append((code_point, code_point))
    return merged


def _escape(code_point: int) -> str:
    """A code point as a PostgreSQL regular expression escape (ARE syntax)."""
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else f"\\U{code_point:08x}"


def bracket_body(code_points: Iterable[int]) -> str:
    """The inside of a bracket expression matching exactly `code_points`."""
    return "".join(
        _escape(low) if low == high else f"{_escape(low)}-{_escape(high)}"
        for low, high in ranges(code_points)
    )


def _string_escape(code_point: int) -> str:
    """A code point as a PostgreSQL escape string (E'...') escape."""
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else f"\\U{code_point:08x}"


def _tokens(text: str) -> Iterator[str]:
    """Split escape-syntax text into its escapes and single characters."""
    position = 0
    while position < len(text):
        if text.startswith("\\U", position):
            size = 10
        elif text.startswith("\\u", position):
            size = 6
        elif text[position] == "\\":
            size = 2
        else:
            size = 1
        yield text[position : position + size]
        position += size


def sql_literal(text: str, indent: str, prefix: str = "") -> str:
    """`text` as SQL string literals joined by ||, one per line of at most 100 characters,
    never cut inside an escape. `prefix` is "e" for an escape string, "" for a plain one
    (whose backslashes are literal: regular expressions are written that way)."""
    width = 100 - len(indent) - len(prefix) - 5
    pieces: list[str] = []
    current = ""
    for token in _tokens(text):
        if current and len(current) + len(token) > width:
            pieces.append(current)
            current = ""
        current += token
    pieces.append(current)
    return f"\n{indent}|| ".join(f"{prefix}'{piece}'" for piece in pieces)


@dataclass(frozen=True)
class Patterns:
    """What the guard's SQL embeds: regular expressions and the digits' translation."""

    digit: str  # bracket expression of every digit
    ignorable: str  # bracket expression of the zero-width characters
    space: str  # bracket expression of white space
    separator: str  # bracket expression of what is no digit, word, space or zero-width
    digits_from: str  # every non-ASCII digit, as escape-string escapes
    digits_to: str  # its value, 0-9, character for character


def patterns() -> Patterns:
    found = classes()
    non_separator = sorted(found.digits + found.ignorable + found.word + found.space)
    non_ascii = [c for c in found.digits if c > 0x7F]
    return Patterns(
        digit=f"[{bracket_body(found.digits)}]",
        ignorable=f"[{bracket_body(found.ignorable)}]",
        space=f"[{bracket_body(found.space)}]",
        separator=f"[^{bracket_body(non_separator)}]",
        digits_from="".join(_string_escape(c) for c in non_ascii),
        digits_to="".join(str(unicodedata.digit(chr(c))) for c in non_ascii),
    )


# At most this many separators (a run of white space counts as one) between digit groups.
MAX_SEPARATORS = 3


def prefilter_pattern() -> str:
    """Thirteen digits of any script with no ASCII letter or digit between them... except
    that JSON's escapes (a tab is written \\t) count as no letter, so the same expression
    serves a text and a JSON value's text. Every card number the run pattern finds matches it."""
    digit = patterns().digit
    gap = r"(?:[^A-Za-z0-9]|\\(?:[bfnrt]|u[0-9a-fA-F]{4}))*"
    return f"{digit}(?:{gap}{digit}){{12}}"


def run_pattern() -> str:
    """A run of digit groups: digits with zero-width characters anywhere, and between groups
    at most MAX_SEPARATORS separators, a run of white space counting as one."""
    found = patterns()
    ignorable = f"{found.ignorable}*"
    token = f"(?:{found.space}+|{found.separator})"
    gap = f"{ignorable}(?:{token}{ignorable}){{0,{MAX_SEPARATORS}}}"
    return f"{found.digit}(?:{gap}{found.digit})*"


def render_sql() -> str:
    """The literals the guard's migration embeds, as SQL expressions."""
    found = patterns()
    indent = "    "
    parts = {
        "prefilter": sql_literal(prefilter_pattern(), indent),
        "run": sql_literal(run_pattern(), indent),
        "ignorable": sql_literal(f"{found.ignorable}+", indent),
        "digits_from": sql_literal(found.digits_from, indent, prefix="e"),
        "digits_to": sql_literal(found.digits_to, indent),
    }
    header = (
        f"-- Generated by `python -m payguard.card_guard` from Unicode "
        f"{unicodedata.unidata_version}.\n"
    )
    return header + "".join(f"\n-- {name}\n{indent}{text}\n" for name, text in parts.items())


if __name__ == "__main__":
    sys.stdout.write(render_sql())
