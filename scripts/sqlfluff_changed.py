"""sqlfluff lint, on the files that changed since their last clean lint.

sqlfluff's rules read one file at a time, so a file that passed once passes again as long as
its bytes, the configuration (.sqlfluff, .sqlfluffignore) and sqlfluff's version are the same:
those files are skipped, and the answer is the one a full lint gives. The others are linted at
once, over every processor (--processes). A clean lint records each file's SHA-256 in
.payguard/sqlfluff-clean.json; a failing one records nothing new, so its files are linted
again next time. `--all` ignores the record.

    python scripts/sqlfluff_changed.py [--all] PATH...
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / ".payguard" / "sqlfluff-clean.json"
CONFIG_FILES = (".sqlfluff", ".sqlfluffignore", "pyproject.toml", "setup.cfg", "tox.ini")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_key(paths: list[Path]) -> str:
    """sqlfluff's version and every configuration file it may read for these paths (the
    project root's, and any in the folders linted)."""
    key = hashlib.sha256(version("sqlfluff").encode())
    candidates = {ROOT / name for name in CONFIG_FILES}
    for path in paths:
        folder = path if path.is_dir() else path.parent
        for name in (".sqlfluff", ".sqlfluffignore"):
            candidates.update(folder.rglob(name))
            candidates.update(
                parent / name for parent in folder.parents if parent.is_relative_to(ROOT)
            )
    for candidate in sorted(c for c in candidates if c.is_file()):
        key.update(str(candidate.relative_to(ROOT)).encode() + b"\0" + candidate.read_bytes())
    return key.hexdigest()


def ignored(path: Path) -> bool:
    """Whether the project's .sqlfluffignore names `path` (a path or a glob from the root)."""
    ignore_file = ROOT / ".sqlfluffignore"
    if not ignore_file.is_file():
        return False
    name = path.relative_to(ROOT).as_posix()
    patterns = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch.fnmatch(name, pattern.lstrip("/")) for pattern in patterns)


def sql_files(paths: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(path.rglob("*.sql"))
        elif path.is_file():
            found.add(path)
        else:
            raise SystemExit(f"sqlfluff: no such file or folder: {path}")
    return sorted(f for f in found if not ignored(f))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="lint every file, record or not")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    paths = [(p if p.is_absolute() else Path.cwd() / p).resolve() for p in args.paths]

    key = config_key(paths)
    try:
        record = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        record = {}
    clean: dict[str, str] = record.get("clean", {}) if record.get("key") == key else {}
    files = sql_files(paths)
    hashes = {str(f.relative_to(ROOT)): digest(f) for f in files}
    changed = [name for name, h in hashes.items() if args.all or clean.get(name) != h]
    if not changed:
        print(f"sqlfluff: {len(files)} files, none changed since its last clean lint")
        return 0
    print(
        f"sqlfluff: {len(changed)} of {len(files)} files changed since their last clean lint",
        flush=True,
    )
    processes = str(os.cpu_count() or 1)
    linted = subprocess.run(
        [sys.executable, "-m", "sqlfluff", "lint", "--processes", processes, *changed],
        cwd=ROOT,
        check=False,
    )
    if linted.returncode == 0:
        clean.update({name: hashes[name] for name in changed})
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps({"key": key, "clean": clean}, indent=1, sort_keys=True))
    return linted.returncode


if __name__ == "__main__":
    sys.exit(main())
