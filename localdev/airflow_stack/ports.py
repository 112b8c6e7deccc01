"""Refuse to start when a port the stack needs is taken, naming it and how to move it."""

from __future__ import annotations

import socket
from collections.abc import Mapping


class PortInUseError(RuntimeError):
    pass


def check_ports_free(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """PortInUseError for the first of `ports` ({name: port}) that something listens on."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                raise PortInUseError(
                    f"{host}:{port} ({name}) is in use: stop what listens there, or choose "
                    f"another port with FRUIT_LOCAL_{name.upper()}=<port>"
                )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests that start a stack beside the user's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
