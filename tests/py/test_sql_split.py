"""The statement splitter matches the Supabase CLI's, quirks included."""

from __future__ import annotations

from payguard.sql_split import split_statements


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def test_splits_on_semicolons_and_trims():
    assert texts("select 1;\n\n  select 2 ;\nselect 3") == ["select 1", "select 2", "select 3"]


def test_keeps_comments_with_the_statement_that_follows():
    assert texts("-- header\n-- more\ncreate table t (id int);") == [
        "-- header\n-- more\ncreate table t (id int)"
    ]


def test_a_comment_only_tail_is_kept_as_a_statement():
    assert texts("select 1;\n-- the end\n") == ["select 1", "-- the end"]


def test_empty_statements_are_dropped():
    assert texts(";;select 1;;\n;") == ["select 1"]


def test_semicolons_inside_quotes_and_comments_do_not_split():
    sql = "select 'a;b', \"c;d\", 'it''s;'; -- x;y\nselect /* p;q /* nested; */ r; */ 2;"
    assert texts(sql) == [
        "select 'a;b', \"c;d\", 'it''s;'",
        "-- x;y\nselect /* p;q /* nested; */ r; */ 2",
    ]


def test_dollar_quoted_bodies_are_one_statement():
    sql = (
        "create function f() returns int language plpgsql as $body$\n"
        "begin perform 1; return 2; end\n$body$;\n"
        "do $$ begin perform 1; end $$;"
    )
    assert len(texts(sql)) == 2
    assert texts(sql)[1] == "do $$ begin perform 1; end $$"


def test_positional_parameters_are_not_dollar_quotes():
    assert texts("prepare p as select $1; select 2;") == ["prepare p as select $1", "select 2"]


def test_parentheses_guard_semicolons_until_the_first_closing_one():
    # The CLI's quirk: inside ( … ) a `;` does not split, and the first `)` ends that.
    assert texts("select (1; 2); select 3") == ["select (1; 2)", "select 3"]
    assert texts("select ((1); 2); select 3") == ["select ((1)", "2)", "select 3"]


def test_begin_atomic_bodies_are_one_statement():
    sql = (
        "create function f() returns int language sql begin atomic select 1; select 2; end;\n"
        "select 3;"
    )
    assert texts(sql) == [
        "create function f() returns int language sql begin atomic select 1; select 2; end",
        "select 3",
    ]


def test_backslash_escapes_the_next_character_outside_quotes_only():
    assert texts("select 1 \\; select 2; select 3") == ["select 1 \\; select 2", "select 3"]
    # Inside quotes a backslash is an ordinary character, so an E'…\'…' string splits, as
    # in the CLI: migrations write a doubled quote instead.
    assert texts("select E'a\\';b'") == ["select E'a\\'", "b'"]


def test_reports_the_line_each_statement_starts_on():
    statements = split_statements("\n-- c\nselect 1;\n\nselect\n  2;")
    assert [s.line for s in statements] == [2, 5]
    assert statements[1].line_of(10) == 6


def test_skipping_ahead_finds_each_delimiter_where_a_character_scan_does():
    # The scanner skips to the next character that matters; these end or guard a statement
    # where scanning one character at a time does (the CLI's quirks included).
    assert texts("select $$$; select 2;") == ["select $$$", "select 2"]
    assert texts("select $a$ x $a$a$; 2;") == ["select $a$ x $a$a$", "2"]
    assert texts("select ($$)$$; 1); 2;") == ["select ($$)$$; 1)", "2"]
    assert texts("select (1 /* ) */ ; 2); 3;") == ["select (1 /* ) */ ; 2)", "3"]
    assert texts("select ('a)b'; 1); 2;") == ["select ('a)b'; 1)", "2"]
    assert texts("select 1 /* a /* b */ ; */; 2;") == ["select 1 /* a /* b */ ; */", "2"]
    assert texts("select 1 -- ;\n; 2") == ["select 1 -- ;", "2"]
    assert texts("create function f() begin atomic select 1; eNd; select 2;") == [
        "create function f() begin atomic select 1; eNd",
        "select 2",
    ]
    statements = split_statements("select 1;\n" * 500 + "\n\nselect 'a\nb';")
    assert [s.line for s in statements] == [*range(1, 501), 503]
