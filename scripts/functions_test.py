"""Run the Edge Functions' Deno tests against a real database and a local Stripe.

The database is a fresh clone of the test template (migrations and the `tests` helpers); the
local Stripe is localstripe with the project's test extension (tests/stripe/extension.py),
started on a free port for the run. The functions read the
environment Supabase's runtime gives them (SUPABASE_DB_URL, SUPABASE_JWT_SECRET, ...), here
pointing at both. Both are thrown away afterwards, whatever the outcome.

    python scripts/functions_test.py [--database NAME] [-- deno test arguments]

`--database` runs against an existing database of the embedded cluster instead of a clone
(kept afterwards).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from payguard.cluster import Cluster
from payguard.project import find_project
from payguard.template import clone_template, drop_clone, ensure_template

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "supabase" / "functions"
DENO = ROOT / "node_modules" / ".bin" / "deno"
# Supabase's local default JWT secret; tests sign their tokens with it.
# The local Stripe's key and webhook secret are the test run's own, known to the tests.
JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105
STRIPE_SECRET_KEY = "sk_test_payguardfunctions"  # noqa: S105
WEBHOOK_SECRET = "whsec_payguardfunctionstests"  # noqa: S105
# Where payout-accounts sends a contractor back from Stripe's onboarding (the app's pages).
ONBOARDING_URLS = {
    "PAYGUARD_ONBOARDING_RETURN_URL": "http://127.0.0.1:3000/payouts/onboarding/return",
    "PAYGUARD_ONBOARDING_REFRESH_URL": "http://127.0.0.1:3000/payouts/onboarding/refresh",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The project's test extension of localstripe (Connect: accounts, transfers, payouts, and the
# events localstripe lacks), served by payguard's localstripe server.
STRIPE_EXTENSION = ROOT / "tests" / "stripe" / "extension.py"


def localstripe_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "payguard.localstripe_server",
        "--port",
        str(port),
        "--extension",
        str(STRIPE_EXTENSION),
    ]


def start_localstripe(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        localstripe_command(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT / ".payguard",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"localstripe exited with {process.returncode}")
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/customers?limit=1",
                headers={"Authorization": f"Bearer {STRIPE_SECRET_KEY}"},
            )
            with urllib.request.urlopen(request, timeout=1):  # noqa: S310 - a local http URL
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("localstripe did not answer within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="an existing database of the embedded cluster")
    parser.add_argument("deno_args", nargs="*", help="more arguments for deno test")
    args = parser.parse_args()

    project = find_project(ROOT)
    cluster = Cluster.for_project(project)
    cluster.start()
    (ROOT / ".payguard").mkdir(exist_ok=True)
    if args.database:
        database, cloned = args.database, False
    else:
        ensure_template(cluster, project)
        database, _ = clone_template(cluster, "functions")
        cloned = True
    port = free_port()
    stripe = start_localstripe(port)
    try:
        env = {
            **os.environ,
            "SUPABASE_URL": "http://127.0.0.1:54321",
            "SUPABASE_DB_URL": cluster.url(database),
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": f"http://127.0.0.1:{port}",
            **ONBOARDING_URLS,
        }
        env.pop("PAYGUARD_ONBOARDING_ORIGINS", None)
        env.pop("SUPABASE_JWKS", None)
        env.pop("SUPABASE_JWKS_URL", None)
        command = [str(DENO), "test", "--frozen", "--allow-all", *args.deno_args]
        return subprocess.run(command, cwd=FUNCTIONS, env=env, check=False).returncode
    finally:
        stripe.terminate()
        try:
            stripe.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stripe.kill()
        if cloned:
            drop_clone(cluster, database)


if __name__ == "__main__":
    sys.exit(main())
