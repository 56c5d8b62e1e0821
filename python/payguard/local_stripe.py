"""`payguard stripe …`: localstripe as the project's local Stripe.

It runs in the background on a free 127.0.0.1 port (the last one again when it is free), its
state under .payguard/stripe/: its objects (kept across restarts unless started fresh), its
log, and the webhook signing secret, made once and kept, so that the functions and the local
Stripe agree on it. Any `sk_…` key is accepted; payguard uses API_KEY. Webhooks are delivered
to the URL given by `deliver_webhooks_to` (the served `stripe-webhook` function), signed with
that secret.

`extension` loads a test extension (tests/stripe/): it adds what localstripe lacks (Connect
accounts, transfers, payouts on connected accounts, disputes, ...) for tests only.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payguard.cluster import free_port
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.services import Service

if TYPE_CHECKING:
    import stripe

API_KEY = "sk_test_payguard_local"
WEBHOOK_NAME = "payguard"
TEST_EXTENSION = Path("tests") / "stripe" / "extension.py"


@dataclass(frozen=True)
class LocalStripeStatus:
    running: bool
    pid: int | None
    port: int | None
    api_base: str | None
    webhook_secret: str
    webhook_url: str | None
    extension: str | None

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


class LocalStripe:
    """The local Stripe whose files live in `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.service = Service("localstripe", state_dir)

    @classmethod
    def for_project(cls, project: Project) -> LocalStripe:
        return cls(project.state_dir / "stripe")

    @property
    def data_file(self) -> Path:
        return self.state_dir / "objects.pickle"

    @property
    def port_file(self) -> Path:
        """The port of the last start, taken again when free, so that URLs stay valid."""
        return self.state_dir / "port"

    def _last_port(self) -> int | None:
        try:
            last = int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return last if port_is_free(last) else None

    @property
    def secret_file(self) -> Path:
        return self.state_dir / "webhook-secret"

    def webhook_secret(self) -> str:
        """The secret webhooks are signed with: made on first use, then kept."""
        try:
            return self.secret_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.state_dir.mkdir(parents=True, exist_ok=True)
        secret = f"whsec_{secrets.token_hex(24)}"
        self.secret_file.touch(mode=0o600)
        self.secret_file.write_text(secret + "\n")
        return secret

    def status(self) -> LocalStripeStatus:
        current = self.service.state()
        port = None if current is None else int(current["port"])
        return LocalStripeStatus(
            running=current is not None,
            pid=None if current is None else int(current["pid"]),
            port=port,
            api_base=None if port is None else api_base(port),
            webhook_secret=self.webhook_secret(),
            webhook_url=None if current is None else current.get("webhook_url"),
            extension=None if current is None else current.get("extension"),
        )

    def start(
        self,
        *,
        port: int | None = None,
        extension: Path | None = None,
        fresh: bool = False,
        persist: bool = True,
    ) -> LocalStripeStatus:
        """Start localstripe unless it runs already (then an option that differs is an error:
        stop it first)."""
        current = self.status()
        if current.running:
            wanted_extension = None if extension is None else str(extension.resolve())
            if (
                fresh
                or (port is not None and port != current.port)
                or wanted_extension != current.extension
            ):
                raise PayguardError(
                    f"localstripe already runs on port {current.port} "
                    f"({'with ' + current.extension if current.extension else 'plain'}); "
                    "stop it first with `payguard stripe stop`"
                )
            return current
        if extension is not None and not extension.is_file():
            raise PayguardError(f"no localstripe extension at {extension}")
        chosen = port or self._last_port() or free_port()
        argv = [sys.executable, "-m", "payguard.localstripe_server", "--port", str(chosen)]
        if persist:
            argv += ["--data-file", str(self.data_file)]
        if fresh:
            argv.append("--from-scratch")
        if extension is not None:
            argv += ["--extension", str(extension.resolve())]
        self.webhook_secret()
        self.port_file.write_text(f"{chosen}\n")
        self.service.start(
            argv,
            port=chosen,
            details={"extension": None if extension is None else str(extension.resolve())},
        )
        return self.status()

    def stop(self) -> bool:
        return self.service.stop()

    def deliver_webhooks_to(self, url: str, *, name: str = WEBHOOK_NAME) -> None:
        """Have localstripe deliver every event to `url`, signed with the webhook secret."""
        configure_webhook(self._running_base(), name, url, self.webhook_secret())
        current = self.service.state()
        if current is not None and name == WEBHOOK_NAME:
            current["webhook_url"] = url
            self.service.state_file.write_text(json.dumps(current, indent=2, sort_keys=True))

    def client(self) -> stripe.StripeClient:
        return stripe_client(self._running_base())

    def _running_base(self) -> str:
        base = self.status().api_base
        if base is None:
            raise PayguardError("localstripe does not run; start it with `payguard stripe start`")
        return base


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def api_base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def stripe_client(base: str, api_key: str = API_KEY) -> stripe.StripeClient:
    """stripe-python pointed at `base` (a local Stripe), never retrying on its own. The SDK is
    imported here, by what talks to Stripe, as it takes longer to import than most commands
    take to run."""
    import stripe

    return stripe.StripeClient(api_key, base_addresses={"api": base}, max_network_retries=0)


def configure_webhook(
    base: str, name: str, url: str, secret: str, events: list[str] | None = None
) -> None:
    """localstripe's `POST /_config/webhooks/<name>`: deliver events (all, or `events`) to
    `url`, signed with `secret`. Configuring a name again replaces it."""
    body: dict[str, Any] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = events
    request = urllib.request.Request(  # noqa: S310 - a local http URL we built
        f"{base}/_config/webhooks/{name}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass
    except (urllib.error.URLError, OSError) as exc:
        raise PayguardError(f"cannot configure localstripe's webhook {name!r}: {exc}") from None
