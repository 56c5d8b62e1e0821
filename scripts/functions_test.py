"""Run the Edge Functions' Deno tests against a real database and a local Stripe.

The test files are spread over several `deno test` processes that run at once (--jobs, by
default one more than the processors), each with a stack of its own: a fresh clone of the test
template (migrations and the `tests` helpers) and a local Stripe (localstripe with the
project's test extension, tests/stripe/extension.py) on a free port. No two files share a
database or a local Stripe at the same time: a payouts run pays out every approved withdrawal
of its database, and the local Stripe has one webhook of each name. The functions read the
environment Supabase's runtime gives them (SUPABASE_DB_URL, SUPABASE_JWT_SECRET, ...), here
pointing at both. Each process's report is printed whole when it ends; everything is thrown
away afterwards, whatever the outcome.

    python scripts/functions_test.py [--jobs N] [--database NAME] [-- deno test arguments]

`--database` runs every file in one process against an existing database of the embedded
cluster instead of clones (kept afterwards). `make deno` passes `--no-check` to deno test, as
it type-checks the same files just before.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from payguard.cluster import Cluster
from payguard.project import find_project
from payguard.template import clone_template, drop_clone, ensure_template
from payguard.testrun import default_jobs, spread
from payguard.token_keys import new_entry

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
            time.sleep(0.1)
    process.kill()
    raise SystemExit("localstripe did not answer within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_files() -> list[str]:
    return sorted(str(p.relative_to(FUNCTIONS)) for p in (FUNCTIONS / "tests").glob("*_test.ts"))


def run_group(
    cluster: Cluster, database: str | None, files: list[str], deno_args: list[str]
) -> tuple[int, str]:
    """`deno test` over `files` on a stack of its own; its exit code and its report."""
    cloned = database is None
    name = clone_template(cluster, "functions")[0] if database is None else database
    port = free_port()
    stripe = start_localstripe(port)
    try:
        env = {
            **os.environ,
            "SUPABASE_URL": "http://127.0.0.1:54321",
            "SUPABASE_DB_URL": cluster.url(name),
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": f"http://127.0.0.1:{port}",
            **ONBOARDING_URLS,
            # Keys of this run alone: the tests open what the functions seal with them.
            "PAYGUARD_TOKEN_KEYS": new_entry("k-test"),
            "PAYGUARD_TOKEN_INDEX_KEYS": new_entry("i-test"),
        }
        env.pop("PAYGUARD_ONBOARDING_ORIGINS", None)
        env.pop("SUPABASE_JWKS", None)
        env.pop("SUPABASE_JWKS_URL", None)
        command = [str(DENO), "test", "--frozen", "--allow-all", *deno_args, *files]
        done = subprocess.run(
            command,
            cwd=FUNCTIONS,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        return done.returncode, done.stdout
    finally:
        stop(stripe)
        if cloned:
            drop_clone(cluster, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="an existing database of the embedded cluster")
    parser.add_argument(
        "--jobs", type=int, default=default_jobs(), help="deno test processes at once"
    )
    parser.add_argument("deno_args", nargs="*", help="more arguments for deno test")
    args = parser.parse_args()

    project = find_project(ROOT)
    cluster = Cluster.for_project(project)
    cluster.start()
    (ROOT / ".payguard").mkdir(exist_ok=True)
    started = time.perf_counter()
    files = test_files()
    if args.database:
        groups = [files]
    else:
        ensure_template(cluster, project)
        # A file's length stands for its time.
        weights = {f: float(len((FUNCTIONS / f).read_text().splitlines())) for f in files}
        groups = spread(files, weights, max(1, args.jobs))
    print(f"deno test: {len(files)} files over {len(groups)} processes", flush=True)
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = [
            pool.submit(run_group, cluster, args.database, group, args.deno_args)
            for group in groups
        ]
        codes = []
        for future in futures:
            code, report = future.result()
            codes.append(code)
            sys.stdout.write(report)
            sys.stdout.flush()
    failed = sum(1 for code in codes if code != 0)
    print(
        f"deno test {'FAIL' if failed else 'PASS'}: {len(files)} files, {len(groups)} processes"
        f"{f', {failed} failed' if failed else ''}, {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
