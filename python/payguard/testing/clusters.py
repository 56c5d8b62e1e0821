"""Scratch clusters for tests: made beside the project's own, and deleted by the test."""

from __future__ import annotations

import os
from pathlib import Path

from payguard.cluster import ADMIN_ROLE, Cluster
from payguard.cluster_memory import memory_root


def scratch_base(project_cluster: Cluster, name: str) -> Path:
    """A folder beside the project's cluster: one the server's OS user can reach."""
    return project_cluster.base.parent / f"scratch-{name}-{os.getpid()}"


def scratch(project_cluster: Cluster, name: str, superuser: str = ADMIN_ROLE) -> Cluster:
    """A cluster in a scratch folder, its data where the project's go (in memory, when the
    machine has a tmpfs). tests/py/test_cli_roles.py makes one whose data stay on disk."""
    return Cluster(scratch_base(project_cluster, name), superuser=superuser, memory=memory_root())
