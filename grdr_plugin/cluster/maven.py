"""Fetch artifacts from Maven Central with the ``mvn`` client into a project-local repository.

``mvn dependency:get -Dtransitive=false`` resolves through the normal Maven machinery (mirrors and
proxies from ~/.m2/settings.xml still apply) into ``.grdr/cache/m2``; the file is then used where
Maven put it (no second copy). A file already there is never fetched again, so only the first
``grdr cluster start`` touches the network.
"""
from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from grdr_plugin.cluster.errors import OUTPUT_TAIL_LINES, ClusterError

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str
    packaging: str = "jar"

    @property
    def coords(self) -> str:
        """``G:A:V:packaging``, the form ``-Dartifact=`` takes."""
        return f"{self.group}:{self.artifact}:{self.version}:{self.packaging}"

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.{self.packaging}"

    def path_in(self, repo: Path) -> Path:
        """Where Maven keeps this artifact in the local repository ``repo``."""
        return repo.joinpath(*self.group.split("."), self.artifact, self.version, self.filename)


def mvn_command(artifact: Artifact, repo: Path) -> list[str]:
    return ["mvn", "-q", "-B", f"-Dmaven.repo.local={repo}", "dependency:get",
            f"-Dartifact={artifact.coords}", "-Dtransitive=false"]


def fetch(artifact: Artifact, repo: Path) -> tuple[Path, bool]:
    """The artifact's file in the local repository; downloads it when missing. Returns (path, downloaded)."""
    target = artifact.path_in(repo)
    if target.is_file() and target.stat().st_size > 0:
        return target, False
    if shutil.which("mvn") is None:
        raise ClusterError("`mvn` (Apache Maven) is not installed; it fetches OpenSearch from Maven Central",
                           hint="apt-get install -y maven")
    repo.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(mvn_command(artifact, repo), capture_output=True, text=True)
    if proc.returncode != 0 or not target.is_file():
        lines = (proc.stdout + proc.stderr).strip().splitlines()[-OUTPUT_TAIL_LINES:]
        raise ClusterError(f"could not fetch {artifact.coords} from Maven Central:\n  " + "\n  ".join(lines),
                           hint="check network access to repo.maven.apache.org (or a mirror in ~/.m2/settings.xml)")
    return target, True


def pom_dependencies(pom_xml: str, scopes: Sequence[str] = ("compile", "runtime")) -> list[Artifact]:
    """The direct dependencies a POM declares (with their versions) in the given scopes."""
    root = ET.fromstring(pom_xml)
    ns = _POM_NS if root.tag.startswith("{") else {}

    def text(el: ET.Element, name: str) -> Optional[str]:
        child = el.find(f"m:{name}", ns) if ns else el.find(name)
        return child.text.strip() if child is not None and child.text else None

    deps_el = root.find("m:dependencies", ns) if ns else root.find("dependencies")
    out: list[Artifact] = []
    for dep in [] if deps_el is None else list(deps_el):
        scope = text(dep, "scope") or "compile"
        group, art, ver = text(dep, "groupId"), text(dep, "artifactId"), text(dep, "version")
        if scope in scopes and group and art and ver and not ver.startswith("${"):
            out.append(Artifact(group, art, ver, text(dep, "type") or "jar"))
    return out
