"""JDK selection for the local OpenSearch node (no JDK needed: fake homes with release files)."""
from pathlib import Path

import pytest

from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.java import Jdk, choose, find_jdk, java_major, parse_release, parse_version_output


def fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return home


@pytest.mark.parametrize("version,major", [("25.0.3", 25), ("21", 21), ("17.0.15", 17), ("1.8.0_392", 8)])
def test_java_major(version, major):
    assert java_major(version) == major


def test_parse_release_and_version_output():
    assert parse_release('IMPLEMENTOR="Eclipse Adoptium"\nJAVA_VERSION="25.0.3"\n') == "25.0.3"
    assert parse_release("nothing here") is None
    assert parse_version_output('openjdk version "21.0.2" 2024-01-16\nOpenJDK Runtime') == "21.0.2"


def test_choose_prefers_a_named_jdk_then_the_newest_scanned():
    j17, j21, j25 = Jdk(Path("/a"), "17.0.1"), Jdk(Path("/b"), "21.0.2"), Jdk(Path("/c"), "25.0.3")
    assert choose([], [j17, j21, j25]) == j25
    assert choose([j21], [j25]) == j21
    assert choose([j17], [j21]) == j21  # a named JDK that is too old is skipped
    assert choose([j17], [j17]) is None


def test_find_jdk_scans_jvm_root_for_the_newest_21_plus(tmp_path):
    fake_jdk(tmp_path, "java-17", "17.0.15")
    fake_jdk(tmp_path, "temurin-21", "21.0.5")
    best = fake_jdk(tmp_path, "temurin-25", "25.0.3")
    (tmp_path / "alias-25").symlink_to(best)
    jdk = find_jdk(None, env={}, jvm_root=tmp_path)
    assert jdk.major == 25 and jdk.home.name in ("temurin-25", "alias-25")


def test_find_jdk_honours_java_home_env_when_new_enough(tmp_path):
    fake_jdk(tmp_path, "temurin-25", "25.0.3")
    mine = fake_jdk(tmp_path / "elsewhere", "jdk21", "21.0.1")
    assert find_jdk(None, env={"JAVA_HOME": str(mine)}, jvm_root=tmp_path).home == mine


def test_settings_java_home_wins_and_must_be_21_plus(tmp_path):
    fake_jdk(tmp_path, "temurin-25", "25.0.3")
    j21 = fake_jdk(tmp_path / "x", "jdk21", "21.0.1")
    j17 = fake_jdk(tmp_path / "y", "jdk17", "17.0.1")
    assert find_jdk(j21, env={}, jvm_root=tmp_path).home == j21
    with pytest.raises(ClusterError, match="needs 21"):
        find_jdk(j17, env={}, jvm_root=tmp_path)
    with pytest.raises(ClusterError, match="no bin/java"):
        find_jdk(tmp_path / "missing", env={}, jvm_root=tmp_path)


def test_no_jdk_21_gives_an_install_hint(tmp_path):
    fake_jdk(tmp_path, "java-17", "17.0.15")
    with pytest.raises(ClusterError) as exc:
        find_jdk(None, env={}, jvm_root=tmp_path)
    assert "17.0.15" in exc.value.message and "GRDR_JAVA_HOME" in exc.value.hint
