"""Start, stop and ping the local Redis (Debian's ``redis-server``), the Celery broker and result backend."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from grdr_plugin.cluster import procs
from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings

REDIS_MARKER = "redis-server"
START_TIMEOUT_S = 15.0  # a daemonized redis-server answers PING within a second; 15 s covers a slow disk
STOP_TIMEOUT_S = 30.0  # on SIGTERM Redis writes its snapshot and AOF first: seconds for a large queue
PING_TIMEOUT_S = 1.0  # on loopback a live Redis answers in microseconds
POLL_S = 0.2  # between PINGs while it starts
INSTALL_HINT = "install it: `apt-get install -y redis-server` (Debian/Ubuntu)"


def command(settings: Settings, paths: ClusterPaths, binary: str = "redis-server") -> list[str]:
    """Loopback only, daemonized, with its files under .grdr/redis (no system config file is read)."""
    return [binary,
            "--bind", "127.0.0.1", "--port", str(settings.redis_port), "--protected-mode", "yes",
            "--daemonize", "yes", "--dir", str(paths.redis),
            "--pidfile", str(paths.redis_pid), "--logfile", str(paths.redis_log)]


def ping(port: int, timeout: float = PING_TIMEOUT_S) -> Optional[str]:
    """Redis version when ``PING`` answers ``+PONG`` on 127.0.0.1:port, else None (inline protocol, no deps)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                return None
            s.sendall(b"INFO server\r\n")
            data = b""
            while b"redis_version:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return "?"


@dataclass
class RedisStart:
    already_running: bool
    version: str
    seconds: float


def start(settings: Settings, paths: ClusterPaths) -> RedisStart:
    t0 = time.monotonic()
    version = ping(settings.redis_port)
    if version is not None:
        return RedisStart(True, version, time.monotonic() - t0)
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None)
    if binary is None:
        raise ClusterError("redis-server is not installed", hint=INSTALL_HINT)
    paths.redis.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(command(settings, paths, binary), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"redis-server failed to start: {(proc.stderr or proc.stdout).strip()}",
                           log=paths.redis_log, hint=f"is port {settings.redis_port} taken? see {paths.redis_log}")
    deadline = t0 + START_TIMEOUT_S
    while time.monotonic() < deadline:
        version = ping(settings.redis_port)
        if version is not None:
            return RedisStart(False, version, time.monotonic() - t0)
        time.sleep(POLL_S)
    raise ClusterError(f"Redis did not answer on 127.0.0.1:{settings.redis_port}", log=paths.redis_log,
                       hint=f"see {paths.redis_log}; is the port taken by something else?")


def stop(settings: Settings, paths: ClusterPaths) -> Optional[tuple[int, bool]]:
    """SIGTERM (Redis saves its snapshot and exits). None when it was not running."""
    pid = procs.read_int(paths.redis_pid)
    if not procs.alive(pid, REDIS_MARKER):
        if ping(settings.redis_port) is not None:
            raise ClusterError(f"a Redis on port {settings.redis_port} answers, but it is not the one "
                               f"under {paths.redis}", hint="stop it with whatever started it")
        paths.redis_pid.unlink(missing_ok=True)
        return None
    assert pid is not None
    graceful = procs.terminate(pid, REDIS_MARKER, STOP_TIMEOUT_S)
    paths.redis_pid.unlink(missing_ok=True)
    return pid, graceful
