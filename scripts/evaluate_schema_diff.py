"""Is a schema diff tool exact on payguard's schema? (docs/schema-changes.md)

For each case it builds OLD and NEW in databases of the embedded cluster, runs each tool as
a subprocess to diff OLD→NEW, applies its output as `postgres` in one transaction to a copy of
OLD, and compares the result with NEW: `pg_dump --schema-only` entries (name, type, owner,
body) and the catalog (function attributes, default privileges, column grants, table ACLs
and RLS flags, policies, comments, triggers, column defaults, schema ACLs).

Cases: `k<N>`: OLD is the migrations less the last N files, NEW all of them; a planted case:
OLD is NEW, and the target is NEW with one change made by hand (PLANTED below).

    python scripts/evaluate_schema_diff.py \\
      --tool 'migra=migra --unsafe --with-privileges {old_psycopg2} {new_psycopg2}' \\
      [--tool NAME=COMMAND ...] [--case k1 --case policy_using ...] [--out DIR]

A tool's command names the URLs of the two databases as {old} and {new} (or {old_psycopg2}
and {new_psycopg2}, for a tool on SQLAlchemy 2 that needs psycopg2); it prints the SQL.
Prints one markdown row per case; writes each tool's SQL and the differences found to DIR
(default .payguard/diff-eval). Its databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from payguard.cluster import Cluster
from payguard.databases import drop_database, recreate_database
from payguard.deploy import deploy
from payguard.project import Project, find_project

PG_BIN = Path("/usr/lib/postgresql/15/bin")
K_CASES = ("k1", "k5", "k20", "k60")
# Each a change made by `postgres` to a copy of NEW.
PLANTED = {
    "policy_using": 'alter policy "Owners can update their projects" on public.projects '
    "using (owner_id = (select auth.uid()) and contractor_id is not null)",
    "column_grant": "revoke update (description) on table public.projects from authenticated; "
    "grant update (title) on table public.projects to escrow_service",
    "function_search_path": "alter function private.setting(text) set search_path = pg_catalog",
    "security_definer": "alter function private.mfa_threshold(character) security invoker",
    "trigger_new": "create trigger keep_row_timestamps_again before update on public.projects "
    "for each row execute function private.keep_row_timestamps()",
    "trigger_disabled": "alter table public.projects disable trigger audit_trail",
    "comment": "comment on column public.projects.title is 'What the homeowner calls the project.'",
    "column_default": "alter table public.projects alter column description set default ''",
    "default_privileges": "alter default privileges in schema public "
    "grant select on tables to auditor",
}

CATALOG = {
    "function attributes": """
        select p.oid::regprocedure::text, p.prosecdef, p.proconfig, p.provolatile,
          p.proleakproof, p.proowner::regrole::text, p.proacl::text, md5(p.prosrc)
        from pg_proc as p join pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in ('public', 'private', 'auth', 'extensions')""",
    "default privileges": """
        select d.defaclrole::regrole::text, coalesce(n.nspname, '*'), d.defaclobjtype,
          d.defaclacl::text
        from pg_default_acl as d left join pg_namespace as n on n.oid = d.defaclnamespace""",
    "column grants": """
        select c.oid::regclass::text, a.attname, a.attacl::text from pg_attribute as a
        join pg_class as c on c.oid = a.attrelid
        join pg_namespace as n on n.oid = c.relnamespace
        where a.attacl is not null and n.nspname not in ('pg_catalog', 'information_schema')""",
    "table ACLs and RLS": """
        select c.oid::regclass::text, c.relkind, c.relacl::text, c.relrowsecurity,
          c.relforcerowsecurity, c.reloptions::text, c.relowner::regrole::text
        from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname not in
          ('pg_catalog', 'information_schema', 'pg_toast', 'supabase_migrations')""",
    "policies": """
        select schemaname, tablename, policyname, permissive, roles::text, cmd, qual,
          with_check
        from pg_policies""",
    "comments": """
        select d.classoid::regclass::text,
          coalesce(pg_describe_object(d.classoid, d.objoid, d.objsubid), '?'), d.description
        from pg_description as d""",
    "triggers": """
        select t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        from pg_trigger as t where not t.tgisinternal""",
    "column defaults": """
        select c.oid::regclass::text, a.attname, pg_get_expr(d.adbin, d.adrelid)
        from pg_attrdef as d join pg_class as c on c.oid = d.adrelid
        join pg_attribute as a on a.attrelid = d.adrelid and a.attnum = d.adnum""",
    "schema ACLs": "select nspname, nspacl::text, nspowner::regrole::text from pg_namespace",
}

DUMP_ENTRY = re.compile(
    r"^--\n-- Name: (.*?); Type: (.*?); Schema: (.*?); Owner: (.*?)\n--\n", re.MULTILINE
)


class Evaluation:
    def __init__(self, project: Project, cluster: Cluster, out: Path) -> None:
        self.project = project
        self.cluster = cluster
        self.out = out
        self.prefix = f"diffeval_{uuid.uuid4().hex[:6]}"
        self.databases: list[str] = []

    def database(self, name: str, template: str | None = None) -> str:
        full = f"{self.prefix}_{name}"
        recreate_database(self.cluster.admin_url(), full, template=template)
        self.databases.append(full)
        return full

    def deploy(self, migrations: list[Path], name: str) -> str:
        database = self.database(name)
        with tempfile.TemporaryDirectory() as folder:
            scratch = Project(Path(folder))
            scratch.migrations_dir.mkdir(parents=True)
            shutil.copy(self.project.supabase_dir / "config.toml", scratch.supabase_dir)
            for path in migrations:
                shutil.copy(path, scratch.migrations_dir / path.name)
            deploy(self.cluster.admin_url(database), scratch)
        return database

    def drop_all(self) -> None:
        for name in self.databases:
            drop_database(self.cluster.admin_url(), name)

    def dump(self, database: str) -> Counter[tuple[str, str]]:
        done = subprocess.run(
            [
                str(PG_BIN / "pg_dump"),
                "--schema-only",
                "--exclude-schema=supabase_migrations",
                "-d",
                self.cluster.admin_url(database),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        parts = DUMP_ENTRY.split(done.stdout)
        entries: Counter[tuple[str, str]] = Counter()
        for i in range(1, len(parts), 5):
            name, kind, schema, owner, body = parts[i : i + 5]
            kept = [
                line
                for line in body.splitlines()
                if line.strip()
                and not line.startswith(("--", "\\", "SET ", "SELECT pg_catalog.set_config"))
            ]
            entries[(kind, f"{schema}.{name} owner={owner}\n" + "\n".join(kept))] += 1
        return entries

    def catalog(self, database: str) -> dict[str, set[str]]:
        with psycopg.connect(self.cluster.admin_url(database)) as conn:
            return {
                key: {repr(row) for row in conn.execute(query).fetchall()}
                for key, query in CATALOG.items()
            }

    def compare(self, got: str, want: str) -> tuple[list[str], list[str]]:
        """The kinds of difference (for the table) and the differences themselves."""
        got_dump, want_dump = self.dump(got), self.dump(want)
        missing, extra = want_dump - got_dump, got_dump - want_dump
        kinds = Counter(kind for kind, _ in missing.elements())
        kinds.update(kind for kind, _ in extra.elements())
        summary = [f"dump {kind}: {count}" for kind, count in sorted(kinds.items())]
        details = [f"- [{kind}] {text}" for kind, text in missing.elements()]
        details += [f"+ [{kind}] {text}" for kind, text in extra.elements()]
        got_catalog, want_catalog = self.catalog(got), self.catalog(want)
        for key in CATALOG:
            lost = want_catalog[key] - got_catalog[key]
            added = got_catalog[key] - want_catalog[key]
            if lost or added:
                summary.append(f"catalog {key}: {len(lost)} missing, {len(added)} extra")
                details += [f"- [{key}] {row}" for row in sorted(lost)]
                details += [f"+ [{key}] {row}" for row in sorted(added)]
        return summary, details

    def run_tool(self, case: str, tool: str, command: str, old: str, new: str) -> dict[str, Any]:
        urls = {"old": self.cluster.url(old), "new": self.cluster.url(new)}
        urls |= {
            f"{key}_psycopg2": url.replace("postgresql://", "postgresql+psycopg2://", 1)
            for key, url in urls.items()
        }
        argv = [part.format(**urls) for part in shlex.split(command)]
        done = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900
        )
        stem = self.out / f"{case}__{re.sub(r'[^a-z0-9]+', '_', tool.lower())}"
        stem.with_suffix(".sql").write_text(done.stdout)
        # migra exits 2 when it found differences.
        if done.returncode not in (0, 2) or (done.returncode and not done.stdout):
            return {"verdict": "tool failed", "error": done.stderr[-1000:]}
        applied = self.database(f"applied_{len(self.databases)}", template=old)
        psql = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-d",
                self.cluster.url(applied),
                "-f",
                str(stem.with_suffix(".sql")),
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if psql.returncode:
            return {"verdict": "script fails", "error": psql.stderr[-1000:]}
        summary, details = self.compare(applied, new)
        drop_database(self.cluster.admin_url(), applied)
        self.databases.remove(applied)
        stem.with_suffix(".diff").write_text("\n\n".join(details))
        return {"verdict": "differs" if summary else "exact", "differences": summary}


def cell(result: dict[str, Any]) -> str:
    verdict = str(result["verdict"])
    if verdict == "differs":
        return f"{verdict}: " + "; ".join(result["differences"])
    if "error" in result:
        errors = [line for line in str(result["error"]).splitlines() if "ERROR" in line]
        return f"{verdict}: " + (errors[-1] if errors else str(result["error"]).strip()[-200:])
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", action="append", required=True, help="NAME=COMMAND")
    parser.add_argument("--case", action="append", help="k<N> or a planted case (default: all)")
    parser.add_argument("--out", type=Path, help="where the SQL and differences go")
    args = parser.parse_args()
    tools = dict(spec.split("=", 1) for spec in args.tool)
    cases = args.case or [*K_CASES, *PLANTED]
    project = find_project()
    cluster = Cluster.for_project(project)
    cluster.start()
    out = args.out or project.state_dir / "diff-eval"
    out.mkdir(parents=True, exist_ok=True)
    evaluation = Evaluation(project, cluster, out)
    migrations = sorted(project.migrations_dir.glob("*.sql"))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        new = evaluation.deploy(migrations, "new")
        # The comparison must see what K = 1 changes, or it could pass anything.
        if not evaluation.compare(evaluation.deploy(migrations[:-1], "self_check"), new)[0]:
            raise SystemExit("the comparison found no difference between OLD (K = 1) and NEW")
        for case in cases:
            if case.startswith("k"):
                old, target = evaluation.deploy(migrations[: -int(case[1:])], case), new
            else:
                old, target = new, evaluation.database(case, template=new)
                with psycopg.connect(cluster.admin_url(target), autocommit=True) as conn:
                    conn.execute("set role postgres")
                    conn.execute(PLANTED[case])
            results[case] = {
                tool: evaluation.run_tool(case, tool, command, old, target)
                for tool, command in tools.items()
            }
            cells = [cell(result) for result in results[case].values()]
            print(f"| {case} | " + " | ".join(cells) + " |", flush=True)
    finally:
        evaluation.drop_all()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    exact = [t for t in tools if all(r[t]["verdict"] == "exact" for r in results.values())]
    print(f"exact on every case: {', '.join(exact) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
