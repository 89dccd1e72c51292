"""Rendering of the local node's configuration and environment."""
from pathlib import Path

import pytest

from grdr_plugin.cluster.node_config import heap_opts, node_env, render_opensearch_yml, rewrite_jvm_options
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.cluster.redis_server import command as redis_command
from grdr_plugin.settings import Settings

JVM_OPTIONS = """\
## heap
-Xms1g
-Xmx1g
11-:-XX:+UseG1GC
-XX:HeapDumpPath=data
-XX:ErrorFile=logs/hs_err_pid%p.log
9-:-Xlog:gc*,gc+age=trace,safepoint:file=logs/gc.log:utctime,pid,tags:filecount=32,filesize=64m
21-:-javaagent:agent/opensearch-agent.jar
"""


def parse_yml(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.split(": ", 1)
            out[k] = v.strip('"')
    return out


def test_opensearch_yml_is_a_loopback_single_node_under_home(tmp_path):
    s = Settings(home=tmp_path / ".grdr", opensearch_port=9333)
    p = ClusterPaths.from_settings(s)
    yml = parse_yml(render_opensearch_yml(s, p))
    assert yml["discovery.type"] == "single-node"
    assert yml["network.host"] == "127.0.0.1"
    assert yml["http.port"] == "9333"
    assert yml["path.data"] == str(tmp_path / ".grdr" / "opensearch" / "data")
    assert yml["path.logs"] == str(tmp_path / ".grdr" / "opensearch" / "logs")
    assert yml["cluster.routing.allocation.disk.threshold_enabled"] == "false"


def test_yml_quotes_paths_with_spaces(tmp_path):
    s = Settings(home=tmp_path / "my home")
    text = render_opensearch_yml(s, ClusterPaths.from_settings(s))
    assert f'path.data: "{tmp_path}/my home/opensearch/data"' in text


def test_jvm_options_drop_heap_and_point_logs_into_home(tmp_path):
    p = ClusterPaths(home=tmp_path)
    out = rewrite_jvm_options(JVM_OPTIONS, p)
    assert "-Xms1g" not in out and "-Xmx1g" not in out
    assert f"-XX:HeapDumpPath={tmp_path}/opensearch/data" in out
    assert f"-XX:ErrorFile={tmp_path}/opensearch/logs/hs_err_pid%p.log" in out
    assert f"file={tmp_path}/opensearch/logs/gc.log:" in out
    assert "21-:-javaagent:agent/opensearch-agent.jar" in out  # relative to the OpenSearch home: untouched
    assert "11-:-XX:+UseG1GC" in out


@pytest.mark.parametrize("heap", ["1g", "512m", "2G"])
def test_heap_opts(heap):
    assert heap_opts(heap) == f"-Xms{heap} -Xmx{heap}"


@pytest.mark.parametrize("heap", ["", "1 g", "-Xmx1g", "lots"])
def test_heap_opts_rejects_junk(heap):
    with pytest.raises(ValueError):
        heap_opts(heap)


def test_node_env_sets_jdk_heap_conf_and_drops_stray_jvm_options():
    env = node_env({"PATH": "/bin", "JAVA_TOOL_OPTIONS": "-Xmx8g", "JAVA_HOME": "/old"},
                   Path("/jdk"), "1g", Path("/os/config"), Path("/run"))
    assert env["JAVA_HOME"] == env["OPENSEARCH_JAVA_HOME"] == "/jdk"
    assert env["OPENSEARCH_JAVA_OPTS"] == "-Xms1g -Xmx1g"
    assert env["OPENSEARCH_PATH_CONF"] == "/os/config"
    assert "JAVA_TOOL_OPTIONS" not in env and env["PATH"] == "/bin"


def test_redis_command_is_loopback_daemonized_under_home(tmp_path):
    s = Settings(home=tmp_path, redis_port=6390)
    cmd = redis_command(s, ClusterPaths.from_settings(s), "redis-server")
    args = dict(zip(cmd[1::2], cmd[2::2]))
    assert args["--bind"] == "127.0.0.1" and args["--port"] == "6390" and args["--daemonize"] == "yes"
    assert args["--dir"] == str(tmp_path / "redis")
    assert args["--pidfile"].startswith(str(tmp_path)) and args["--logfile"].startswith(str(tmp_path))
