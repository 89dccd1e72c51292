"""Pid files, liveness checks and permission checks used by `grdr cluster` (no server needed)."""
import os
import subprocess
import sys

from grdr_plugin.cluster import procs
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings


def test_int_files_round_trip(tmp_path):
    f = tmp_path / "run" / "x.pid"
    assert procs.read_int(f) is None
    procs.write_int(f, 1234)
    assert procs.read_int(f) == 1234
    f.write_text("garbage")
    assert procs.read_int(f) is None


def test_alive_checks_the_command_line_so_a_recycled_pid_is_not_ours():
    assert procs.alive(os.getpid())
    assert procs.alive(os.getpid(), marker="python")
    assert not procs.alive(os.getpid(), marker="org.opensearch.bootstrap.OpenSearch-not-me")
    assert not procs.alive(None) and not procs.alive(0)


def test_a_process_is_alive_all_through_its_exec():
    # bin/opensearch execs java; /proc/<pid>/cmdline reads empty meanwhile, which once aborted a node restart.
    marker = "grdr-exec-marker"
    then = f"import time; time.sleep(0.3)  # {marker}"
    first = f"import os, sys; os.execv(sys.executable, [sys.executable, '-c', {then!r}])  # {marker}"
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", first])
        try:
            while child.poll() is None:
                assert procs.alive(child.pid, marker) or child.poll() is not None
        finally:
            child.wait(timeout=10)


def test_terminate_stops_a_process_with_sigterm():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # grdr-test-marker"])
    try:
        assert procs.terminate(child.pid, "grdr-test-marker", timeout_s=10)
    finally:
        child.wait(timeout=10)
    assert not procs.alive(child.pid, "grdr-test-marker")


def test_untraversable_parent(tmp_path):
    locked = tmp_path / "locked"
    inner = locked / "inner"
    inner.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(locked, 0o700)
    try:
        assert procs.untraversable_parent(inner, top=tmp_path) == locked
    finally:
        os.chmod(locked, 0o755)
    assert procs.untraversable_parent(inner, top=tmp_path) is None


def test_paths_are_absolute_and_under_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = ClusterPaths.from_settings(Settings(home=".grdr"))
    assert p.home == tmp_path / ".grdr"
    for sub in (p.maven_repo, p.data, p.logs, p.opensearch_pid, p.redis_pid, p.dist_home("3.5.0")):
        assert sub.is_absolute() and p.home in sub.parents
