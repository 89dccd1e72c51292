"""Choose the JDK that runs OpenSearch 3.x (it needs Java 21 or newer)."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

from grdr_plugin.cluster.errors import ClusterError

MIN_JAVA = 21  # OpenSearch 3.x runs on Java 21 or later
JAVA_VERSION_TIMEOUT_S = 30  # `java -version` takes well under a second; a hung binary must not hang the start
JVM_ROOT = Path("/usr/lib/jvm")


@dataclass(frozen=True)
class Jdk:
    home: Path
    version: str  # e.g. "25.0.3"

    @property
    def major(self) -> int:
        return java_major(self.version)


def java_major(version: str) -> int:
    """``"25.0.3"`` -> 25, ``"21"`` -> 21, and the old ``"1.8.0_392"`` -> 8."""
    parts = re.findall(r"\d+", version)
    if not parts:
        raise ValueError(f"not a Java version: {version!r}")
    first = int(parts[0])
    return int(parts[1]) if first == 1 and len(parts) > 1 else first


def parse_release(text: str) -> Optional[str]:
    """JAVA_VERSION from a JDK's ``release`` file."""
    m = re.search(r'^JAVA_VERSION="?([^"\n]+)"?', text, re.MULTILINE)
    return m.group(1).strip() if m else None


def parse_version_output(text: str) -> Optional[str]:
    """The version from ``java -version`` output (``openjdk version "21.0.2" 2024-01-16``)."""
    m = re.search(r'version "([^"]+)"', text)
    return m.group(1) if m else None


def probe(home: Path) -> Optional[Jdk]:
    """The JDK at ``home``, or None when there is no java there."""
    java = home / "bin" / "java"
    if not (java.is_file() and os.access(java, os.X_OK)):
        return None
    release = home / "release"
    version = None
    if release.is_file():
        version = parse_release(release.read_text(errors="replace"))
    if version is None:  # no release file (some distro JREs): ask the binary
        try:
            out = subprocess.run([str(java), "-version"], capture_output=True, text=True,
                                 timeout=JAVA_VERSION_TIMEOUT_S)
            version = parse_version_output(out.stderr + out.stdout)
        except (OSError, subprocess.SubprocessError):
            return None
    return Jdk(home=home, version=version) if version else None


def env_homes(env: Mapping[str, str]) -> list[Path]:
    """JDKs the user named: OPENSEARCH_JAVA_HOME, then JAVA_HOME."""
    return [Path(env[v]) for v in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME") if env.get(v)]


def scan(jvm_root: Path = JVM_ROOT) -> list[Path]:
    """Every JDK-looking folder under /usr/lib/jvm (symlinked aliases collapse to one)."""
    if not jvm_root.is_dir():
        return []
    seen: set[Path] = set()
    out = []
    for p in sorted(jvm_root.iterdir()):
        real = p.resolve()
        if p.is_dir() and real not in seen:
            seen.add(real)
            out.append(p)
    return out


def choose(named: Iterable[Jdk], scanned: Iterable[Jdk], minimum: int = MIN_JAVA) -> Optional[Jdk]:
    """The first JDK the user named that is new enough, else the newest scanned one >= ``minimum``."""
    for jdk in named:
        if jdk.major >= minimum:
            return jdk
    best: Optional[Jdk] = None
    for jdk in scanned:
        if jdk.major >= minimum and (best is None or jdk.major > best.major):
            best = jdk
    return best


def find_jdk(java_home: Optional[Path], env: Mapping[str, str] = os.environ,
             jvm_root: Path = JVM_ROOT) -> Jdk:
    """``settings.java_home`` when set (it must be 21+), else a 21+ JDK named by OPENSEARCH_JAVA_HOME or
    JAVA_HOME, else the newest 21+ JDK under /usr/lib/jvm."""
    if java_home is not None:
        jdk = probe(Path(java_home))
        if jdk is None:
            raise ClusterError(f"GRDR_JAVA_HOME={java_home} has no bin/java",
                               hint="point GRDR_JAVA_HOME at a JDK 21+ home, or unset it to search /usr/lib/jvm")
        if jdk.major < MIN_JAVA:
            raise ClusterError(f"GRDR_JAVA_HOME={java_home} is Java {jdk.version}; OpenSearch 3 needs {MIN_JAVA}+",
                               hint="point GRDR_JAVA_HOME at a JDK 21+ home")
        return jdk
    named = [j for j in map(probe, env_homes(env)) if j is not None]
    scanned = [j for j in map(probe, scan(jvm_root)) if j is not None]
    found = named + scanned
    best = choose(named, scanned)
    if best is None:
        have = ", ".join(f"{j.home} ({j.version})" for j in found) or "none"
        raise ClusterError(f"no JDK {MIN_JAVA}+ found (found: {have})",
                           hint="install one (e.g. `apt-get install -y openjdk-21-jdk-headless` or a Temurin 21+) "
                                "or set GRDR_JAVA_HOME")
    return best
