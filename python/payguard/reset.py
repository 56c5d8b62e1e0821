"""`payguard db reset`: throw the embedded database away and deploy it anew."""

from __future__ import annotations

from collections.abc import Callable

from payguard.cluster import DATABASE, Cluster
from payguard.databases import recreate_database
from payguard.deploy import DeployReport, Step, deploy
from payguard.project import Project


def reset(
    project: Project,
    *,
    database: str = DATABASE,
    seed: bool = True,
    on_step: Callable[[Step], None] | None = None,
) -> DeployReport:
    """Reset the embedded cluster and redeploy.

    For the default database the whole cluster is recreated (roles included) on the same
    port; for another database only that database is dropped and deployed again.
    """
    cluster = Cluster.for_project(project)
    if database == DATABASE:
        port = cluster.port() if cluster.initialized() else None
        cluster.destroy()
        cluster.start(port)
    else:
        cluster.start()
        recreate_database(cluster.admin_url(), database)
    return deploy(cluster.admin_url(database), project, seed=seed, on_step=on_step)
