"""The extension's own routing: a table of (method, path pattern, handler) consulted by a
middleware before localstripe's router answers, so that an extension route may also take over
a path localstripe has (`/v1/payouts` on a connected account, with `Stripe-Account`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import StripeObject
from localstripe.server import get_post_data, json_response, unflatten_data

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    # True: only with a Stripe-Account header; False: only without; None: either.
    connected: bool | None


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, handler: Handler, *, connected: bool | None = None):
        """`path` with {name} or {name:regex} parameters, as aiohttp writes them."""
        regex = re.sub(
            r"\{(\w+)(?::([^}]+))?\}",
            lambda m: f"(?P<{m[1]}>{m[2] or '[^/]+'})",
            path,
        )
        self.routes.append(Route(method, re.compile(f"^{regex}$"), handler, connected))

    def match(self, request: web.Request) -> tuple[Route, dict[str, str]] | None:
        account = request.headers.get("Stripe-Account")
        for route in self.routes:
            if route.method != request.method:
                continue
            if route.connected is not None and route.connected != (account is not None):
                continue
            found = route.pattern.match(request.path)
            if found:
                return route, found.groupdict()
        return None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        matched = self.match(request)
        if matched is None:
            return await handler(request)
        route, params = matched
        if request.method == "GET":
            data = unflatten_data(request.query) or {}
        else:
            data = await get_post_data(request) or {}
        expand = data.pop("expand", None)
        account = request.headers.get("Stripe-Account")
        result = route.handler(data=data, account=account, **params)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, StripeObject):
            return json_response(result._export(expand=expand))
        return json_response(result)


def require(condition: bool, message: str = "Bad request", code: str | None = None) -> None:
    """Raise Stripe's 400 invalid_request_error unless `condition`."""
    if not condition:
        raise UserError(400, message, {"code": code} if code else None)


def as_int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return None


def unexpected(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise UserError(400, "Unexpected " + ", ".join(extra))
