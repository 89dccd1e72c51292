"""The local Redis keeps what it acknowledged through a SIGKILL (AOF), and a home whose Redis ran without AOF keeps
its queue when AOF is turned on. Each test runs its own redis-server on a free port under tmp_path (the binary
`make system-deps` installs); nothing else needs to run."""
import os
import signal
import socket
import subprocess
import time

import pytest
import redis
from pydantic import ValidationError

from grdr_plugin.cluster import procs, redis_server
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings

QUEUED = [f"batch-{i}" for i in range(50)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local(tmp_path):
    s = Settings(home=tmp_path, redis_port=_free_port())
    paths = ClusterPaths.from_settings(s)
    yield s, paths
    pid = procs.read_int(paths.redis_pid)
    if procs.alive(pid, redis_server.REDIS_MARKER):
        os.kill(pid, signal.SIGKILL)


def _kill(paths: ClusterPaths) -> None:
    pid = procs.read_int(paths.redis_pid)
    assert procs.alive(pid, redis_server.REDIS_MARKER)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_command_turns_the_aof_on_with_the_configured_fsync(tmp_path, monkeypatch):
    s = Settings(home=tmp_path)
    args = dict(zip(*[iter(redis_server.command(s, ClusterPaths.from_settings(s))[1:])] * 2))
    assert (args["--appendonly"], args["--appendfsync"], args["--appenddirname"]) == ("yes", "everysec",
                                                                                      redis_server.AOF_DIR)
    monkeypatch.setenv("GRDR_REDIS_APPENDFSYNC", "always")
    assert "always" in redis_server.command(Settings(home=tmp_path), ClusterPaths.from_settings(s))
    monkeypatch.setenv("GRDR_REDIS_APPENDFSYNC", "sometimes")
    with pytest.raises(ValidationError, match="GRDR_REDIS_APPENDFSYNC") as err:
        Settings()
    assert "'everysec', 'always' or 'no'" in str(err.value)


def test_a_sigkilled_redis_restarts_with_everything_it_acknowledged(local):
    s, paths = local
    redis_server.start(s, paths)
    r = redis.Redis(port=s.redis_port)
    for item in QUEUED:  # one write per reply, as a producer enqueues batches
        r.lpush("grdr-ingest", item)
    _kill(paths)
    assert not redis_server.start(s, paths).already_running
    assert r.lrange("grdr-ingest", 0, -1)[::-1] == [q.encode() for q in QUEUED]


def test_a_home_whose_redis_ran_without_aof_keeps_its_queue_when_the_aof_is_turned_on(local):
    s, paths = local
    paths.redis.mkdir(parents=True)
    subprocess.run(redis_server.command(s, paths, appendonly=False), check=True)  # as started before the AOF
    deadline = time.monotonic() + redis_server.START_TIMEOUT_S
    while redis_server.ping(s.redis_port) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    r = redis.Redis(port=s.redis_port)
    r.rpush("grdr-ingest", *QUEUED)
    assert redis_server.stop(s, paths) is not None  # SIGTERM: the snapshot holds the queue
    assert redis_server.snapshot_without_aof(paths)

    redis_server.start(s, paths)
    assert r.lrange("grdr-ingest", 0, -1) == [q.encode() for q in QUEUED]
    assert r.info("persistence")["aof_enabled"] == 1 and not redis_server.snapshot_without_aof(paths)
    r.rpush("grdr-ingest", "after")
    _kill(paths)  # nothing of the queue lives only in the snapshot now
    redis_server.start(s, paths)
    assert r.lrange("grdr-ingest", 0, -1) == [q.encode() for q in QUEUED] + [b"after"]
