"""Maven coordinates, POM parsing, plugin descriptors and zip extraction (no network, no mvn)."""
import stat
import zipfile

import pytest

from grdr_plugin.cluster.artifacts import (
    PAINLESS_CLASS,
    check_extended_plugins,
    dist_artifact,
    extract_zip,
    knn_artifact,
    painless_descriptor,
    parse_properties,
)
from grdr_plugin.cluster.errors import ClusterError, tail
from grdr_plugin.cluster.maven import Artifact, mvn_command, pom_dependencies

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.opensearch.plugin</groupId>
  <artifactId>lang-painless</artifactId>
  <version>3.5.0</version>
  <dependencies>
    <dependency><groupId>org.antlr</groupId><artifactId>antlr4-runtime</artifactId><version>4.13.1</version>
      <scope>compile</scope></dependency>
    <dependency><groupId>org.ow2.asm</groupId><artifactId>asm-util</artifactId><version>9.9.1</version>
      <scope>compile</scope></dependency>
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>opensearch-scripting-painless-spi</artifactId>
      <version>3.5.0</version></dependency>
    <dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13</version>
      <scope>test</scope></dependency>
  </dependencies>
</project>
"""


def test_coordinates():
    assert dist_artifact("3.5.0").coords == "org.opensearch.distribution.integ-test-zip:opensearch:3.5.0:zip"
    assert knn_artifact("3.5.0.0").filename == "opensearch-knn-3.5.0.0.zip"


def test_mvn_command_uses_a_project_local_repository(tmp_path):
    cmd = mvn_command(Artifact("g", "a", "1", "zip"), tmp_path / "m2")
    assert cmd[0] == "mvn" and "dependency:get" in cmd and "-Dtransitive=false" in cmd
    assert f"-Dmaven.repo.local={tmp_path / 'm2'}" in cmd and "-Dartifact=g:a:1:zip" in cmd


def test_artifact_path_follows_the_maven_repository_layout(tmp_path):
    art = Artifact("org.opensearch.plugin", "opensearch-knn", "3.5.0.0", "zip")
    assert art.path_in(tmp_path) == tmp_path / "org/opensearch/plugin/opensearch-knn/3.5.0.0/opensearch-knn-3.5.0.0.zip"


def test_pom_dependencies_keeps_compile_scope_with_versions():
    deps = pom_dependencies(POM)
    assert [d.coords for d in deps] == [
        "org.antlr:antlr4-runtime:4.13.1:jar",
        "org.ow2.asm:asm-util:9.9.1:jar",
        "org.opensearch.plugin:opensearch-scripting-painless-spi:3.5.0:jar",
    ]


def test_painless_descriptor_round_trips():
    props = parse_properties(painless_descriptor("3.5.0").render())
    assert props["name"] == "lang-painless"
    assert props["classname"] == PAINLESS_CLASS
    assert props["version"] == props["opensearch.version"] == "3.5.0"
    assert props["java.version"] == "21"
    assert props["extended.plugins"] == ""


def test_parse_properties_skips_comments():
    assert parse_properties("# c\n! c\nname = x\nextended.plugins=a,b\n\n") == {"name": "x", "extended.plugins": "a,b"}


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = (mode & 0xFFFF) << 16
            zf.writestr(info, data)


def test_extract_zip_keeps_the_executable_bit(tmp_path):
    z = tmp_path / "d.zip"
    make_zip(z, [("os/bin/opensearch", "#!/bin/sh\n", 0o755), ("os/config/x.yml", "a: 1\n", 0o644)])
    extract_zip(z, tmp_path / "out")
    assert (tmp_path / "out/os/bin/opensearch").stat().st_mode & stat.S_IXUSR
    assert not (tmp_path / "out/os/config/x.yml").stat().st_mode & stat.S_IXUSR


def test_extract_zip_refuses_entries_outside_the_target(tmp_path):
    z = tmp_path / "evil.zip"
    make_zip(z, [("../escape.txt", "x", 0o644)])
    with pytest.raises(ClusterError):
        extract_zip(z, tmp_path / "out")


def test_check_extended_plugins(tmp_path):
    z = tmp_path / "knn.zip"
    make_zip(z, [("plugin-descriptor.properties", "name=knn\nextended.plugins=lang-painless,transport-grpc\n", 0o644)])
    home = tmp_path / "home"
    (home / "modules" / "transport-grpc").mkdir(parents=True)
    with pytest.raises(ClusterError, match="lang-painless"):
        check_extended_plugins(home, z)
    (home / "modules" / "lang-painless").mkdir()
    check_extended_plugins(home, z)


def test_tail_returns_the_last_lines(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == ["line 97", "line 98", "line 99"]
    assert tail(tmp_path / "missing.log") == []
