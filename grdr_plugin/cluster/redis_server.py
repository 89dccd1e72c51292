"""Start, stop and ping the local Redis (Debian's ``redis-server``), the Celery broker and result backend.

It runs with the append-only file on (``GRDR_REDIS_APPENDFSYNC``), so a crashed Redis restarts with every batch
it had acknowledged: queued, held by a worker, or finished with its result."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from grdr_plugin.cluster import procs
from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings

REDIS_MARKER = "redis-server"
START_TIMEOUT_S = 15.0  # a daemonized redis-server answers PING within a second; 15 s covers a slow disk
STOP_TIMEOUT_S = 30.0  # on SIGTERM Redis writes its snapshot and AOF first: seconds for a large queue
AOF_TIMEOUT_S = 120.0  # turning the AOF on rewrites the whole dataset once: seconds for a queue of a million batches
PING_TIMEOUT_S = 1.0  # on loopback a live Redis answers in microseconds
COMMAND_TIMEOUT_S = 10.0  # CONFIG SET and INFO answer at once (the AOF rewrite runs in a child); 10 s: a busy disk
POLL_S = 0.2  # between PINGs while it starts
INSTALL_HINT = "install it: `apt-get install -y redis-server` (Debian/Ubuntu)"
# Named on the command line (they are Redis's defaults) because start() looks for them.
RDB_FILE = "dump.rdb"
AOF_DIR = "appendonlydir"


def command(settings: Settings, paths: ClusterPaths, binary: str = "redis-server",
            appendonly: bool = True) -> list[str]:
    """Loopback only, daemonized, with its files under .grdr/redis (no system config file is read), AOF on."""
    return [binary,
            "--bind", "127.0.0.1", "--port", str(settings.redis_port), "--protected-mode", "yes",
            "--daemonize", "yes", "--dir", str(paths.redis),
            "--pidfile", str(paths.redis_pid), "--logfile", str(paths.redis_log),
            "--dbfilename", RDB_FILE, "--appenddirname", AOF_DIR,
            "--appendonly", "yes" if appendonly else "no", "--appendfsync", settings.redis_appendfsync]


def snapshot_without_aof(paths: ClusterPaths) -> bool:
    """A snapshot but no AOF: the files of a Redis that ran without AOF. Started with AOF on, Redis 7 would load
    the new, empty AOF instead of the snapshot and drop every queued batch."""
    return (paths.redis / RDB_FILE).is_file() and not (paths.redis / AOF_DIR).is_dir()


def enable_aof(port: int, log: Path, timeout_s: float = AOF_TIMEOUT_S) -> None:
    """Turn the AOF on in a running Redis (it writes the AOF from the data it holds) and wait until it is written."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=COMMAND_TIMEOUT_S)
    client.config_set("appendonly", "yes")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if info["aof_enabled"] and not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            if info["aof_last_bgrewrite_status"] == "ok":
                return
            raise ClusterError(f"Redis on 127.0.0.1:{port} failed to write its append-only file", log=log,
                               hint=f"see {log}; is the disk full?")
        time.sleep(POLL_S)
    raise ClusterError(f"Redis on 127.0.0.1:{port} did not write its append-only file in {timeout_s:g} s", log=log,
                       hint=f"see {log}; is the disk full?")


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
    migrate = snapshot_without_aof(paths)  # start on the snapshot, then turn the AOF on
    proc = subprocess.run(command(settings, paths, binary, appendonly=not migrate), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"redis-server failed to start: {(proc.stderr or proc.stdout).strip()}",
                           log=paths.redis_log, hint=f"is port {settings.redis_port} taken? see {paths.redis_log}")
    deadline = t0 + START_TIMEOUT_S
    while time.monotonic() < deadline:
        version = ping(settings.redis_port)
        if version is not None:
            if migrate:
                enable_aof(settings.redis_port, paths.redis_log)
            return RedisStart(False, version, time.monotonic() - t0)
        time.sleep(POLL_S)
    raise ClusterError(f"Redis did not answer on 127.0.0.1:{settings.redis_port}", log=paths.redis_log,
                       hint=f"see {paths.redis_log}; is the port taken by something else?")


def stop(settings: Settings, paths: ClusterPaths) -> Optional[tuple[int, bool]]:
    """SIGTERM (Redis syncs its AOF, saves its snapshot and exits). None when it was not running."""
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
