"""The server the schema tools make their scratch databases on, reached as a superuser."""

from __future__ import annotations

import os
import uuid

from psycopg.conninfo import make_conninfo

from payguard.cluster import Cluster
from payguard.project import Project
from payguard.template import ensure_template


def database_url(server_url: str, name: str) -> str:
    """The connection string of `server_url` (a URL or key=value string) for database `name`."""
    return make_conninfo(server_url, dbname=name)


def scratch_name(purpose: str) -> str:
    """A database name no other process or test uses: the purpose, the process, a random tag."""
    return f"payguard_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def embedded_server(project: Project) -> str:
    """The project's embedded cluster, started, as its superuser; its test template is made
    current first, so that the migrations' database is a copy of it rather than a deploy."""
    cluster = Cluster.for_project(project)
    cluster.start()
    ensure_template(cluster, project)
    return cluster.admin_url()
