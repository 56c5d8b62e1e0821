"""An app client, as PostgREST would run its requests: one transaction each, under the JWT's
role and claims. When a request fails, it prints the psql session that reproduces it."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import ClientCursor, pq

from payguard.testing.request import Request, service_claims, user_claims

Params = Sequence[Any] | Mapping[str, Any] | None


class ApiError(Exception):
    """An RPC answered with an error status, as PostgREST would turn it into an HTTP error:
    the status, and PostgREST's body ({code, message, details, hint}). Its `sqlstate` is the
    body's code, so callers handle it like a database error."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        self.sqlstate = str(body.get("code"))
        super().__init__(f"HTTP {status} {self.sqlstate}: {body.get('message')}")


class Session:
    """One request's transaction. Every statement is recorded for the reproduction."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], request: Request) -> None:
        self.conn = conn
        self.request = request
        self.statements: list[str] = []

    def execute(self, query: str, params: Params = None) -> ClientCursor[tuple[Any, ...]]:
        cursor = ClientCursor(self.conn)
        self.statements.append(cursor.mogrify(query, params))
        cursor.execute(query, params)
        return cursor

    def fetchone(self, query: str, params: Params = None) -> tuple[Any, ...] | None:
        return self.execute(query, params).fetchone()

    def fetchall(self, query: str, params: Params = None) -> list[tuple[Any, ...]]:
        return self.execute(query, params).fetchall()

    def scalar(self, query: str, params: Params = None) -> Any:
        row = self.fetchone(query, params)
        return None if row is None else row[0]

    def rpc(self, function: str, *args: Any) -> Any:
        """POST /rpc/<function>: call public.<function> with positional arguments and return
        its answer. An answer with an error status in response.status is raised as ApiError
        (the request then commits, as PostgREST commits it)."""
        placeholders = ", ".join(["%s"] * len(args))
        row = self.fetchone(
            f"select answer, current_setting('response.status', true) "
            f"from public.{function}({placeholders}) as answer",
            args,
        )
        assert row is not None
        answer, status = row
        if status and int(status) >= 400:
            raise ApiError(int(status), answer)
        return answer


class AppClient:
    """Requests against one database URL, which should log in as `authenticator`, as
    PostgREST does. Each request opens its own connection, unless `reuse_connection`: then
    requests take turns on one connection, as PostgREST's pool hands a connection from one
    request to the next (every setting a request makes is local to its transaction). Close
    such a client with close() or a `with` block."""

    def __init__(
        self, url: str, *, reproduce_failures: bool = True, reuse_connection: bool = False
    ) -> None:
        self.url = url
        self.reproduce_failures = reproduce_failures
        self.reuse_connection = reuse_connection
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        if not self.reuse_connection:
            with psycopg.connect(self.url, autocommit=True) as conn:
                yield conn
            return
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        try:
            yield self._conn
        except BaseException:
            # A connection left in an unknown state is not handed to the next request.
            if self._conn.info.transaction_status != pq.TransactionStatus.IDLE:
                self.close()
            raise

    def as_user(
        self,
        user_id: uuid.UUID | str,
        *,
        aal: str = "aal1",
        amr: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        path: str = "/rest/v1/",
        email: str | None = None,
        role: str = "authenticated",
    ) -> AbstractContextManager[Session]:
        """A signed-in user's request; `role` is the JWT's role (a staff role for staff)."""
        claims = user_claims(user_id, aal=aal, amr=amr, email=email)
        return self.request(Request(role, claims, method, path, headers or {}))

    def as_anon(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        path: str = "/rest/v1/",
    ) -> AbstractContextManager[Session]:
        return self.request(Request("anon", {}, method, path, headers or {}))

    def as_service(
        self,
        role: str = "service_role",
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        path: str = "/rest/v1/",
    ) -> AbstractContextManager[Session]:
        return self.request(Request(role, service_claims(), method, path, headers or {}))

    @contextmanager
    def request(self, request: Request) -> Iterator[Session]:
        """One transaction: SET LOCAL the request's settings (in one statement, as PostgREST
        does), run the body, then commit, or roll back if anything failed (as PostgREST
        does)."""
        with self._connection() as conn:
            session = Session(conn, request)
            conn.execute("begin read only" if request.read_only else "begin")
            try:
                settings = request.settings()
                conn.execute(
                    "select " + ", ".join(["set_config(%s, %s, true)"] * len(settings)),
                    [part for pair in settings for part in pair],
                )
                yield session
            except ApiError:
                # PostgREST commits a request whose function returned an error status.
                conn.execute("commit")
                raise
            except BaseException:
                conn.execute("rollback")
                if self.reproduce_failures:
                    print(reproduction(self.url, session), file=sys.stderr)
                raise
            if conn.info.transaction_status == pq.TransactionStatus.INERROR:
                conn.execute("rollback")
            else:
                conn.execute("commit")


def reproduction(url: str, session: Session) -> str:
    """A psql session that replays the failed request by hand."""
    lines = [
        "-- reproduce this request by hand:",
        f"psql '{url}' <<'SQL'",
        "begin read only;" if session.request.read_only else "begin;",
    ]
    for name, value in session.request.settings():
        literal = value.replace("'", "''")
        lines.append(f"select set_config('{name}', '{literal}', true);")
    lines += [s.rstrip(";") + ";" for s in session.statements]
    lines += ["rollback;", "SQL"]
    return "\n".join(lines)
