"""Background services: a service is recorded only once it listens on its port itself."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from payguard.cluster import free_port
from payguard.services import PortTakenError, Service

# Binds 127.0.0.1:PORT (exits at once if it cannot), then waits to be stopped.
LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "time.sleep(60)\n"
)


def test_a_service_listening_on_its_port_is_recorded(tmp_path: Path):
    service = Service("listener", tmp_path)
    port = free_port()
    state = service.launch([sys.executable, "-c", LISTENER, str(port)], port=port).wait()
    try:
        assert state["port"] == port
        assert service.state() is not None
    finally:
        assert service.stop()


def test_a_port_another_process_took_first_is_an_error_and_nothing_is_recorded(tmp_path: Path):
    service = Service("listener", tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        launch = service.launch([sys.executable, "-c", LISTENER, str(port)], port=port)
        with pytest.raises(PortTakenError, match=f"port {port}: another process took it"):
            launch.wait()
    assert service.state() is None
    assert not service.state_file.exists()
