"""A real `grdr serve` subprocess for integration tests: started on a free port, killed if a test left it up."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import httpx

READY_TIMEOUT_S = 60.0  # loading the model and building the trie take seconds; a minute covers a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def grdr_serve(model: Path, alias: str, log: Path, *, args: tuple[str, ...] = (),
               env: Optional[dict[str, str]] = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) once /health answers; `args` are more `grdr serve` flags, `env` more variables."""
    url = f"http://127.0.0.1:{free_port()}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--model", str(model), "--index", alias,
                                 "--port", url.rsplit(":", 1)[1], *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not healthy(url):
                assert proc.poll() is None, f"grdr serve exited with {proc.returncode}: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"grdr serve not up after {READY_TIMEOUT_S} s: " \
                                                    f"{log.read_text()[-2000:]}"
                time.sleep(0.2)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
