"""`python -m payguard.localstripe_server`: localstripe, Stripe's API for local use, served on
127.0.0.1.

Three things differ from `python -m localstripe`: it listens on 127.0.0.1 only; its objects are
kept in the file given by --data-file (or only in memory) instead of localstripe's fixed path
in the system's temporary folder, which every checkout on the machine would share; and
--extension loads a Python file whose `install(app)` adds routes or middlewares to
localstripe's aiohttp application before it serves (the test extension, tests/stripe/).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pickle
import sys
from pathlib import Path

from aiohttp import web
from localstripe import resources, server  # type: ignore[import-untyped]


def keep_store_in(data_file: Path | None, *, load: bool) -> None:
    """Keep localstripe's objects in `data_file` (None: in memory only), loading them first
    when `load` and the file exists."""
    store = resources.store
    if data_file is None:
        store.dump_to_disk = lambda: None
        return

    def dump() -> None:
        partial = data_file.with_name(data_file.name + ".partial")
        with partial.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(data_file)

    if load and data_file.exists():
        try:
            with data_file.open("rb") as f:
                dict.update(store, pickle.load(f))  # noqa: S301 - our own file, under .payguard/
        except (pickle.UnpicklingError, AttributeError, ModuleNotFoundError, EOFError) as exc:
            logging.getLogger("aiohttp.access").warning(
                "starting empty: %s could not be read (%s)", data_file, exc
            )
    store.dump_to_disk = dump


def load_extension(path: Path, app: web.Application) -> None:
    """Import the Python file at `path` as a top-level module (its folder first on the path,
    so that it imports its siblings, and pickled objects of its classes load again) and run
    its `install(app)`."""
    if not path.is_file():
        raise SystemExit(f"no localstripe extension at {path}")
    sys.path.insert(0, str(path.parent.resolve()))
    module = importlib.import_module(path.stem)
    module.install(app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m payguard.localstripe_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-file", type=Path, default=None)
    parser.add_argument(
        "--from-scratch", action="store_true", help="Ignore the data file's objects."
    )
    parser.add_argument("--extension", type=Path, default=None)
    args = parser.parse_args(argv)

    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(sys.stdout))

    keep_store_in(args.data_file, load=not args.from_scratch)
    app: web.Application = server.app
    if args.extension is not None:
        load_extension(args.extension, app)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=logger, print=None)


if __name__ == "__main__":
    main()
