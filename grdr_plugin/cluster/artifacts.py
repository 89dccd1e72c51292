"""Assemble a runnable OpenSearch home from Maven Central artifacts.

1. ``org.opensearch.distribution.integ-test-zip:opensearch:<v>:zip``: the core (no JDK inside).
2. ``modules/lang-painless``: k-NN extends it. When the zip lacks it (older integ-test zips ship only
   transport modules) it is built from lang-painless's own jar and the jars its POM declares, plus a
   plugin descriptor written here. OpenSearch core jars are not copied: ``lib/`` already has them.
3. ``org.opensearch.plugin:opensearch-knn:<v>.0:zip`` installed with ``bin/opensearch-plugin --batch``.

The result is built in a staging folder and renamed into place, so a half-built home is never used.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grdr_plugin.cluster import maven
from grdr_plugin.cluster.errors import OUTPUT_TAIL_LINES, ClusterError
from grdr_plugin.cluster.java import MIN_JAVA
from grdr_plugin.cluster.maven import Artifact
from grdr_plugin.cluster.node_config import rewrite_jvm_options
from grdr_plugin.cluster.paths import ClusterPaths

Log = Callable[[str], None]

KNN_PLUGIN = "opensearch-knn"
PAINLESS = "lang-painless"
PAINLESS_CLASS = "org.opensearch.painless.PainlessModulePlugin"
# the permissions the distribution's own lang-painless module asks for
PAINLESS_POLICY = """grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";

  // needed to find the classloader to load allowlisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""
MARKER = ".grdr-assembled"


def dist_artifact(version: str) -> Artifact:
    return Artifact("org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip")


def knn_artifact(knn_version: str) -> Artifact:
    return Artifact("org.opensearch.plugin", KNN_PLUGIN, knn_version, "zip")


def painless_pom(version: str) -> Artifact:
    return Artifact("org.opensearch.plugin", PAINLESS, version, "pom")


@dataclass
class PluginDescriptor:
    name: str
    description: str
    classname: str
    version: str
    opensearch_version: str
    java_version: str = str(MIN_JAVA)
    extended_plugins: list[str] = field(default_factory=list)

    def render(self) -> str:
        return (
            "# written by grdr: the descriptor OpenSearch reads to load this plugin/module\n"
            f"description={self.description}\n"
            f"version={self.version}\n"
            f"name={self.name}\n"
            f"classname={self.classname}\n"
            f"java.version={self.java_version}\n"
            f"opensearch.version={self.opensearch_version}\n"
            "custom.foldername=\n"
            f"extended.plugins={','.join(self.extended_plugins)}\n"
            "has.native.controller=false\n"
        )


def parse_properties(text: str) -> dict[str, str]:
    """A Java .properties file, just enough for plugin descriptors (key=value, # comments)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def painless_descriptor(opensearch_version: str) -> PluginDescriptor:
    return PluginDescriptor(
        name=PAINLESS,
        description="An easy, safe and fast scripting language for OpenSearch",
        classname=PAINLESS_CLASS,
        version=opensearch_version,
        opensearch_version=opensearch_version,
    )


def extract_zip(zip_path: Path, dest: Path) -> None:
    """Unzip keeping the Unix modes (``zipfile`` drops them, and bin/ scripts must stay executable)."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = dest / info.filename
            if not target.resolve().is_relative_to(dest.resolve()):
                raise ClusterError(f"{zip_path.name} has an entry outside its folder: {info.filename}")
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o7777
            if mode:
                os.chmod(target, mode)


@dataclass
class Assembled:
    home: Path
    knn_version: str
    painless_source: str  # "distribution" or "maven"
    downloaded: list[str]
    built: bool  # assembled by this call (False: the existing home was reused)


def is_assembled(home: Path, version: str, knn_version: str) -> bool:
    marker = home / MARKER
    return marker.is_file() and marker.read_text().strip() == f"{version} {knn_version}"


def ensure_distribution(paths: ClusterPaths, version: str, knn_version: str, java_home: Path,
                        log: Log, rebuild: bool = False) -> Assembled:
    """The assembled OpenSearch home for ``version``; fetches and builds it only when missing."""
    home = paths.dist_home(version)
    downloaded: list[str] = []
    if not rebuild and is_assembled(home, version, knn_version):
        painless = (home / "modules" / PAINLESS / MARKER).is_file()
        return Assembled(home, knn_version, "maven" if painless else "distribution", downloaded, built=False)

    dist_zip, got = maven.fetch(dist_artifact(version), paths.maven_repo)
    if got:
        downloaded.append(dist_zip.name)
    knn_zip, got = maven.fetch(knn_artifact(knn_version), paths.maven_repo)
    if got:
        downloaded.append(knn_zip.name)

    staging = paths.opensearch / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log(f"unpacking {dist_zip.name}")
    extract_zip(dist_zip, staging)
    built = staging / f"opensearch-{version}"
    if not (built / "bin" / "opensearch").is_file():
        raise ClusterError(f"{dist_zip.name} does not hold opensearch-{version}/bin/opensearch",
                           hint=f"delete {dist_zip} and run again")

    painless_dir = built / "modules" / PAINLESS
    if painless_dir.is_dir():
        painless_source = "distribution"
    else:
        log("the distribution has no lang-painless module: assembling it from Maven jars")
        downloaded += assemble_painless(painless_dir, version, paths)
        painless_source = "maven"

    check_extended_plugins(built, knn_zip)
    install_plugin(built, knn_zip, java_home, log)

    jvm_options = built / "config" / "jvm.options"
    jvm_options.write_text(rewrite_jvm_options(jvm_options.read_text(), paths))
    (built / MARKER).write_text(f"{version} {knn_version}\n")

    shutil.rmtree(home, ignore_errors=True)
    built.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    return Assembled(home, knn_version, painless_source, downloaded, built=True)


def assemble_painless(module_dir: Path, version: str, paths: ClusterPaths) -> list[str]:
    """modules/lang-painless from lang-painless-<v>.jar and the jars its POM declares (compile scope)."""
    downloaded: list[str] = []
    pom, got = maven.fetch(painless_pom(version), paths.maven_repo)
    if got:
        downloaded.append(pom.name)
    deps = maven.pom_dependencies(pom.read_text())
    jars = [Artifact("org.opensearch.plugin", PAINLESS, version)] + [d for d in deps if d.packaging == "jar"]
    module_dir.mkdir(parents=True)
    for art in jars:
        jar, got = maven.fetch(art, paths.maven_repo)
        if got:
            downloaded.append(jar.name)
        shutil.copy2(jar, module_dir / jar.name)
    (module_dir / "plugin-descriptor.properties").write_text(painless_descriptor(version).render())
    (module_dir / "plugin-security.policy").write_text(PAINLESS_POLICY)
    (module_dir / MARKER).write_text("assembled from Maven jars by grdr\n")
    return downloaded


def zip_descriptor(plugin_zip: Path) -> dict[str, str]:
    with zipfile.ZipFile(plugin_zip) as zf:
        return parse_properties(zf.read("plugin-descriptor.properties").decode())


def required_extended_plugins(descriptor: dict[str, str]) -> list[str]:
    """``extended.plugins`` without the ones marked ``name;optional=true`` (OpenSearch loads without those)."""
    names = []
    for entry in descriptor.get("extended.plugins", "").split(","):
        name, *flags = [part.strip() for part in entry.split(";")]
        if name and "optional=true" not in flags:
            names.append(name)
    return names


def check_extended_plugins(home: Path, plugin_zip: Path) -> None:
    """Fail early, with a clear message, when a plugin the zip extends is not in modules/ or plugins/."""
    extended = required_extended_plugins(zip_descriptor(plugin_zip))
    missing = [p for p in extended if not ((home / "modules" / p).is_dir() or (home / "plugins" / p).is_dir())]
    if missing:
        raise ClusterError(f"{plugin_zip.name} extends {', '.join(missing)}, which this distribution lacks",
                           hint="use an OpenSearch version whose integ-test zip ships these modules")


def install_plugin(home: Path, plugin_zip: Path, java_home: Path, log: Log) -> None:
    """``bin/opensearch-plugin install --batch``: it validates the zip and accepts its permissions unasked."""
    log(f"installing {plugin_zip.name}")
    env = {**os.environ, "JAVA_HOME": str(java_home), "OPENSEARCH_JAVA_HOME": str(java_home),
           "OPENSEARCH_PATH_CONF": str(home / "config")}
    env.pop("JAVA_TOOL_OPTIONS", None)
    proc = subprocess.run([str(home / "bin" / "opensearch-plugin"), "install", "--batch", plugin_zip.as_uri()],
                          cwd=home, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()[-OUTPUT_TAIL_LINES:]
        raise ClusterError(f"installing {plugin_zip.name} failed:\n  " + "\n  ".join(lines),
                           hint=f"delete {plugin_zip} if it is damaged and run again")

