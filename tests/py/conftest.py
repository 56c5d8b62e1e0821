"""Fixtures shared by the pytest suite. The database fixtures (project, cluster, database,
database_url, admin_url, db, client, make_user) come from payguard's own plugin; the local
Stripe, its webhook receiver and the served functions (local_stripe, stripe_client,
stripe_test_api, webhook_receiver, serve_functions) from payguard.testing.local_stack; the
end-to-end tests' `stage` (webhooks held back, passed on by the test) is here."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from payguard.cluster import Cluster
from payguard.databases import drop_database, recreate_database
from payguard.project import Project
from payguard.template import clone_template, drop_clone, remove_test_helpers
from payguard.testing.client import AppClient
from payguard.token_keys import local_environment

if TYPE_CHECKING:
    # Imported where used, so that pytest_plugins loads payguard.testing.local_stack first.
    from payguard.testing.stripe_flow import Stage

pytest_plugins = ["payguard.testing.fixtures", "payguard.testing.local_stack"]

MigrationWriter = Callable[[str, str], Path]
STATE_DIR = Path(__file__).resolve().parents[2] / ".payguard"

MODEL_SEED = "PAYGUARD_MODEL_SEED"


def pytest_configure(config: pytest.Config) -> None:
    """Draw the money model's seed for this run, unless one is given to replay: set before
    pytest-xdist starts its workers, so that every worker reads the same one."""
    if not os.environ.get(MODEL_SEED):
        os.environ[MODEL_SEED] = str(random.SystemRandom().getrandbits(32))
    # The token keys the served functions hold (the caller's, else the local stack's key
    # files), in the environment, where the tests' own reads of tokens and lookups find them.
    os.environ.update(local_environment(STATE_DIR))


def pytest_report_header(config: pytest.Config) -> str:
    seed = os.environ[MODEL_SEED]
    return f"money model seed: {seed} (replay: PAYGUARD_MODEL_SEED={seed} make test-model)"


# Each group's time (a module's, or a money model shard's) in the last run of it, so that
# pytest-xdist hands out the longest first and no long one starts last. Any order is correct:
# only the run's length depends on it.
MODULE_TIMES = STATE_DIR / "pytest-module-times.json"


def _module_times() -> dict[str, float]:
    try:
        loaded = json.loads(MODULE_TIMES.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _group(item: pytest.Item) -> str:
    """What pytest-xdist runs on one worker (--dist loadgroup): a module, whole, as its
    fixtures are per module; the money model's shards each apart."""
    shard = getattr(item, "callspec", None)
    if item.path.name == "test_money_model.py" and shard is not None:
        return f"{item.path.name}[{shard.params.get('shard')}]"
    return item.path.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    times = _module_times()
    order: dict[str, int] = {}
    for item in items:
        group = _group(item)
        order.setdefault(group, len(order))
        item.add_marker(pytest.mark.xdist_group(group))
    # The longest first, then in file order; the tests of a group keep their order.
    items.sort(key=lambda i: (-times.get(_group(i), 0.0), order[_group(i)]))


_spent: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each module's time (set-up, call and tear-down), on the controller too."""
    name = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    if name == "test_money_model.py" and "[" in report.nodeid:
        name += "[" + report.nodeid.rsplit("[", 1)[1]
    _spent[name] = _spent.get(name, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Keep the times of the modules run whole (no -k), from the controller (or a run
    without workers), for the next run's order."""
    if hasattr(session.config, "workerinput") or session.config.option.keyword or not _spent:
        return
    try:
        MODULE_TIMES.parent.mkdir(parents=True, exist_ok=True)
        times = {**_module_times(), **_spent}
        MODULE_TIMES.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass


@pytest.fixture
def scratch_project(tmp_path: Path, project: Project) -> Project:
    """An empty Supabase project folder, with the real project's config.toml."""
    supabase = tmp_path / "supabase"
    (supabase / "migrations").mkdir(parents=True)
    shutil.copy(project.supabase_dir / "config.toml", supabase / "config.toml")
    return Project(tmp_path)


@pytest.fixture
def write_migration(scratch_project: Project) -> MigrationWriter:
    """write_migration("20260101000000_name", sql) adds a migration file to the scratch project."""

    def write(stem: str, sql: str) -> Path:
        path = scratch_project.migrations_dir / f"{stem}.sql"
        path.write_text(sql)
        return path

    return write


@pytest.fixture
def empty_database(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a new, empty database (no stand-in, no migrations), dropped afterwards."""
    name = f"payguard_scratch_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    recreate_database(cluster.admin_url(), name)
    yield name
    drop_database(cluster.admin_url(), name)


@pytest.fixture
def fresh_database(cluster: Cluster) -> Iterator[str]:
    """The name of a new clone of the template (every migration deployed, and the tests
    schema) for one test, dropped afterwards: a fresh deploy, without deploying."""
    name, _ = clone_template(cluster, "fresh")
    yield name
    drop_clone(cluster, name)


@pytest.fixture
def deployed_database(cluster: Cluster) -> Iterator[str]:
    """The name of a new database as deploying the project to an empty one leaves it, dropped
    afterwards: a clone of the template less its `tests` schema, which test_schema_check
    finds the same as a fresh deploy, object by object."""
    name, _ = clone_template(cluster, "deployed")
    remove_test_helpers(cluster.admin_url(name))
    yield name
    drop_clone(cluster, name)


@pytest.fixture(scope="session")
def supabase_cli(project: Project) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the pinned Supabase CLI; returns the completed process (output as text)."""
    binary = project.root / "node_modules" / ".bin" / "supabase"
    if not binary.exists():
        pytest.fail("the Supabase CLI is not installed; run `make setup`")

    def run(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DO_NOT_TRACK": "1", "SUPABASE_TELEMETRY_DISABLED": "1"}
        return subprocess.run(
            [str(binary), *args, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def record_books(cluster: Cluster) -> Callable[[str], dict[str, Any]]:
    """record_books(database): in a deployed database, hana funds two milestones (through
    payment_service's RPC) and releases the first to carl; returns the admin URL and the
    payments."""

    def record(database: str) -> dict[str, Any]:
        admin = cluster.admin_url(database)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("set role postgres")
            conn.execute(
                "update private.settings set value = '0' where key = 'escrow_hold_seconds'"
            )
            hana, carl = uuid.uuid4(), uuid.uuid4()
            for user, role in ((hana, "homeowner"), (carl, "contractor")):
                conn.execute(
                    "insert into auth.users (id, aud, role, email, raw_user_meta_data) "
                    "values (%s, 'authenticated', 'authenticated', %s, "
                    "jsonb_build_object('role', %s::text))",
                    (user, f"{user}@example.test", role),
                )
            project_id = uuid.uuid4()
            conn.execute(
                "insert into public.projects (id, owner_id, contractor_id, title) "
                "values (%s, %s, %s, 'Kitchen')",
                (project_id, hana, carl),
            )
            conn.execute(
                "insert into public.escrow_accounts (user_id, project_id, currency) "
                "values (%s, %s, 'USD')",
                (hana, project_id),
            )
            payments, milestones = [], []
            for position in (1, 2):
                milestone = conn.execute(
                    "insert into public.project_milestones (project_id, position, title, "
                    "amount_minor, currency) values (%s, %s, 'Step', 30000, 'USD') returning id",
                    (project_id, position),
                ).fetchone()
                assert milestone is not None
                milestones.append(milestone[0])
                payment = conn.execute(
                    "insert into public.milestone_payments (milestone_id, payer_id) "
                    "values (%s, %s) returning id",
                    (milestone[0], hana),
                ).fetchone()
                assert payment is not None
                payments.append(payment[0])
        client = AppClient(cluster.socket_url("authenticator", database))
        for number, payment in enumerate(payments):
            with client.as_service("payment_service") as req:
                req.rpc(
                    "fund_milestone_payment",
                    payment,
                    f"pi_{number}Books",
                    30000,
                    "USD",
                    f"fund-{number}",
                )
        with client.as_user(carl) as req:
            req.rpc("submit_milestone", milestones[0], "submit-0")
        with client.as_user(hana) as req:
            req.rpc("release_milestone_payment", payments[0], "release-0")
        return {"admin": admin, "payments": payments}

    return record


@pytest.fixture(scope="module")
def stage_settings() -> dict[str, str]:
    """private.settings values a module's `stage` sets (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def stage(
    serve_functions,
    database,
    database_url,
    admin_url,
    cluster,
    stripe_test_api,
    local_stripe,
    stage_settings,
) -> Iterator[Stage]:
    """The end-to-end tests' stage: the functions served against the module's database, no
    escrow or payout hold (and the module's `stage_settings`), the local Stripe's webhooks
    held back in a sink, each passed on to the served `stripe-webhook` by the test."""
    from payguard.testing.local_stack import FunctionsClient
    from payguard.testing.stripe_flow import Border, held_webhooks

    functions = serve_functions(database)
    border = Border(
        database_url,
        cluster.socket_url("authenticator", database),
        FunctionsClient(functions),
        stripe_test_api,
    )
    with border:
        border.lift_holds()
        with border.sql() as conn:
            for key, value in stage_settings.items():
                conn.execute("update private.settings set value = %s where key = %s", (value, key))
        with held_webhooks(border, local_stripe, functions, admin_url) as held:
            yield held
