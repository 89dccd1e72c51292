"""Processes and users: pid files, liveness, stopping, and the unprivileged user OpenSearch needs under root."""
from __future__ import annotations

import fcntl
import os
import pwd
import signal
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from grdr_plugin.cluster.errors import ClusterError

# OpenSearch refuses to start as root; under root the node runs as this system user.
NODE_USER = "grdr"
# How long an empty command line of a running process counts as "in the middle of exec" (it takes milliseconds).
EXEC_GRACE_S = 0.5
POLL_S = 0.25  # between liveness checks while a process stops
KILL_WAIT_S = 10.0  # after SIGKILL the kernel reaps a process in well under a second; 10 s covers a busy disk


@dataclass(frozen=True)
class RunAs:
    """Who the node process runs as; ``None`` uid means "the caller"."""
    uid: Optional[int] = None
    gid: Optional[int] = None
    name: str = ""

    @property
    def switches(self) -> bool:
        return self.uid is not None


def read_int(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_int(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: Optional[int], marker: str = "") -> bool:
    """Whether ``pid`` runs and (with ``marker``) its command line contains it: a recycled pid is not ours."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # runs, as another user
    if marker:
        return marker in _settled_cmdline(pid) and _proc_state(pid) != "Z"
    return _proc_state(pid) != "Z"


def _settled_cmdline(pid: int) -> str:
    """The command line, read again while it is empty but the process runs: /proc/<pid>/cmdline reads empty
    for a moment while a process execs (bin/opensearch execs java), and a starting node is not a dead one."""
    deadline = time.monotonic() + EXEC_GRACE_S
    cmd = cmdline(pid)
    while not cmd and _proc_state(pid) not in ("Z", "") and time.monotonic() < deadline:
        time.sleep(0.01)  # an exec takes milliseconds
        cmd = cmdline(pid)
    return cmd


def _proc_state(pid: int) -> str:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def terminate(pid: int, marker: str, timeout_s: float) -> bool:
    """SIGTERM, then wait up to ``timeout_s``; SIGKILL only when it does not go. True when it went gracefully."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid, marker):
            return True
        time.sleep(POLL_S)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + KILL_WAIT_S
    while alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return False


def node_user() -> RunAs:
    """The caller, or under root the system user ``grdr`` (created on first use)."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        pw = pwd.getpwnam(NODE_USER)
    except KeyError:
        proc = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                               "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", NODE_USER],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"could not create the system user {NODE_USER!r}: {proc.stderr.strip()}",
                               hint="OpenSearch will not run as root; run `grdr cluster start` as a normal user"
                               ) from None
        pw = pwd.getpwnam(NODE_USER)
    return RunAs(uid=pw.pw_uid, gid=pw.pw_gid, name=NODE_USER)


def chown_tree(root: Path, who: RunAs) -> None:
    """Give ``root`` and everything below to ``who`` (no-op unless we switch user)."""
    if not who.switches or not root.exists():
        return
    assert who.uid is not None and who.gid is not None
    os.chown(root, who.uid, who.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_uid != who.uid or st.st_gid != who.gid:
                os.chown(p, who.uid, who.gid, follow_symlinks=False)


def untraversable_parent(path: Path, top: Path = Path("/")) -> Optional[Path]:
    """The first of ``path`` and its ancestors (from ``top`` down) that others cannot enter (no x bit):
    it would lock out the node user."""
    resolved = path.resolve()
    for parent in [*reversed(resolved.parents), resolved]:
        if parent != top and top not in parent.parents:
            continue
        try:
            mode = parent.stat().st_mode
        except OSError:
            return parent
        if not mode & stat.S_IXOTH:
            return parent
    return None


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """One `grdr cluster start`/`stop` at a time per home: two racing starts would spawn two nodes."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
