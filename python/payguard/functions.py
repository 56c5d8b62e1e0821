"""`payguard functions …`: the Edge Functions under supabase/functions/, each served by
`deno serve` on its own 127.0.0.1 port, with the environment Supabase gives them, pointing at
the embedded database and the local Stripe.

A function is a folder holding `index.ts` whose name does not start with `_` or `.` (`_shared`
holds code, not a function). `supabase/functions/deno.json` is the configuration when it
exists (its `deno.lock` beside it). A served function answers at
`http://127.0.0.1:<port>/<name>`, the path it sees behind Supabase's gateway.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from payguard.cluster import free_port
from payguard.errors import PayguardError
from payguard.jwt import api_key, jwt_secret
from payguard.project import Project
from payguard.services import Launch, PortTakenError, Service
from payguard.token_keys import local_environment

WEBHOOK_FUNCTION = "stripe-webhook"
# The Supabase CLI's default `[auth] site_url`: the app, locally.
DEFAULT_SITE_URL = "http://127.0.0.1:3000"
# What the process keeps from payguard's own environment: what Deno needs to run at all.
PASSED_THROUGH = ("PATH", "HOME", "DENO_DIR", "TMPDIR", "LANG", "NO_COLOR")
DENO_PERMISSIONS = ("--allow-net", "--allow-env", "--allow-read")
# Ports tried for one function before serving fails (see Functions.serve).
PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class StripeSettings:
    """Where the functions find Stripe, and how its webhooks are signed."""

    api_base: str | None
    secret_key: str
    webhook_secret: str


def supabase_environment(project: Project, db_url: str, stripe: StripeSettings) -> dict[str, str]:
    """The variables Supabase's edge runtime gives a function, for the local stack."""
    env = {
        "SUPABASE_URL": f"http://127.0.0.1:{api_port(project)}",
        "SUPABASE_DB_URL": db_url,
        "SUPABASE_JWT_SECRET": jwt_secret(),
        "SUPABASE_ANON_KEY": api_key("anon"),
        "SUPABASE_SERVICE_ROLE_KEY": api_key("service_role"),
        "STRIPE_SECRET_KEY": stripe.secret_key,
        "STRIPE_WEBHOOK_SECRET": stripe.webhook_secret,
        **onboarding_urls(project),
        **local_environment(project.state_dir),
    }
    if stripe.api_base is not None:
        env["STRIPE_API_BASE"] = stripe.api_base
    return env


def onboarding_urls(project: Project) -> dict[str, str]:
    """The project's secrets for payout-accounts, locally: where Stripe's onboarding sends a
    contractor back (the app's pages under `[auth] site_url` of supabase/config.toml)."""
    site = DEFAULT_SITE_URL
    try:
        config = tomllib.loads((project.supabase_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        config = {}
    configured = config.get("auth", {}).get("site_url")
    if isinstance(configured, str) and configured.startswith(("http://", "https://")):
        site = configured.rstrip("/")
    return {
        "PAYGUARD_ONBOARDING_RETURN_URL": f"{site}/payouts/onboarding/return",
        "PAYGUARD_ONBOARDING_REFRESH_URL": f"{site}/payouts/onboarding/refresh",
    }


def api_port(project: Project) -> int:
    """The API gateway's port in supabase/config.toml (54321 unless it says otherwise)."""
    try:
        config = tomllib.loads((project.supabase_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return 54321
    port = config.get("api", {}).get("port", 54321)
    return port if isinstance(port, int) else 54321


def deno_binary(project: Project) -> Path:
    """The project's Deno (node_modules/.bin/deno), else the one on PATH."""
    local = project.root / "node_modules" / ".bin" / "deno"
    if local.exists():
        return local.resolve()
    found = shutil.which("deno")
    if found is None:
        raise PayguardError("deno not found; run `make setup`")
    return Path(found).resolve()


class Functions:
    """The functions in `functions_dir`, served with their state in `state_dir`."""

    def __init__(self, project: Project, functions_dir: Path, state_dir: Path) -> None:
        self.project = project
        self.functions_dir = functions_dir
        self.state_dir = state_dir

    @classmethod
    def for_project(cls, project: Project, functions_dir: Path | None = None) -> Functions:
        return cls(
            project,
            functions_dir or project.supabase_dir / "functions",
            project.state_dir / "functions",
        )

    def names(self) -> list[str]:
        if not self.functions_dir.is_dir():
            return []
        return sorted(
            folder.name
            for folder in self.functions_dir.iterdir()
            if folder.is_dir()
            and not folder.name.startswith(("_", "."))
            and (folder / "index.ts").is_file()
        )

    def _service(self, name: str) -> Service:
        return Service(name, self.state_dir)

    def serve(self, env: Mapping[str, str], names: list[str] | None = None) -> dict[str, str]:
        """Serve `names` (default: every function), each unless it is served already; returns
        every served function's URL."""
        available = self.names()
        wanted = available if names is None else names
        unknown = sorted(set(wanted) - set(available))
        if unknown:
            raise PayguardError(
                f"no function {', '.join(unknown)} in {self.functions_dir} "
                f"(there: {', '.join(available) or 'none'})"
            )
        if not wanted:
            raise PayguardError(f"no functions to serve in {self.functions_dir}")
        deno = deno_binary(self.project)
        config = self.functions_dir / "deno.json"
        process_env = {k: v for k in PASSED_THROUGH if (v := os.environ.get(k)) is not None}
        process_env |= {"DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1", **env}
        # Every function's Deno starts at once, and then each is waited for: starting them
        # one after the other would add up their start-up times.
        launches: list[Launch] = []
        ports: set[int] = set()

        def launch(name: str) -> Launch:
            port = free_port()
            while port in ports:
                port = free_port()
            ports.add(port)
            argv = [str(deno), "serve", "--host", "127.0.0.1", "--port", str(port)]
            argv += list(DENO_PERMISSIONS)
            if config.is_file():
                argv += ["--config", str(config)]
            argv.append(str(self.functions_dir / name / "index.ts"))
            started = self._service(name).launch(
                argv,
                port=port,
                env=process_env,
                cwd=self.functions_dir,
                details={"name": name, "url": f"http://127.0.0.1:{port}/{name}"},
            )
            launches.append(started)
            return started

        try:
            waiting = [launch(name) for name in wanted if self._service(name).state() is None]
            for started in waiting:
                # A port chosen free may be taken by another process before Deno listens on
                # it (other services start meanwhile): then the function gets another port.
                for attempt in range(PORT_ATTEMPTS):
                    try:
                        started.wait()
                        break
                    except PortTakenError:
                        if attempt == PORT_ATTEMPTS - 1:
                            raise
                        started = launch(str(started.recorded["name"]))
        except BaseException:
            for started in launches:
                if started.service.state() is None:
                    started.abort()
            raise
        return self.status()

    def status(self) -> dict[str, str]:
        """The URL of each function being served."""
        served: dict[str, str] = {}
        if not self.state_dir.is_dir():
            return served
        for state_file in sorted(self.state_dir.glob("*.json")):
            current = self._service(state_file.stem).state()
            if current is not None:
                served[state_file.stem] = str(current["url"])
        return served

    def stop(self) -> list[str]:
        """Stop every served function; returns their names."""
        # Each asked to end first, so that they end side by side rather than one by one.
        stopped = [name for name in self.status() if self._service(name).terminate()]
        for name in stopped:
            self._service(name).stop()
        return stopped

    def webhook_url(self) -> str | None:
        """Where Stripe's webhooks go: the served `stripe-webhook` function, if served."""
        return self.status().get(WEBHOOK_FUNCTION)

    def log_file(self, name: str) -> Path:
        return self._service(name).log_file
