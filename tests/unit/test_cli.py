"""The command line's surface, with nothing running: version, help, exit codes, flags refused before any
network call, results on stdout and errors on stderr."""
import socket
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from cli.console import EXIT_CODES_HELP
from cli.main import app
from grdr_plugin.settings import get_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def grdr(monkeypatch):
    """`grdr ARGS` in process, with OpenSearch settings pointing at a port where nothing listens."""
    monkeypatch.setenv("GRDR_OPENSEARCH_URL", f"http://127.0.0.1:{closed_port()}")
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, [str(a) for a in args])
    get_settings.cache_clear()


def flat(text: str) -> str:
    return " ".join(text.split())


def test_version_and_documented_exit_codes(grdr):
    res = grdr("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"grdr {version('grdr')}"
    res = grdr("--help")
    assert res.exit_code == 0 and flat(EXIT_CODES_HELP) in flat(res.stdout)
    assert "doctor" in res.stdout


def test_help_lists_every_dataset_file_and_shows_no_type_on_flags(grdr):
    res = grdr("train", "--help")
    assert "catalog.jsonl, features.npy, [frames.npy], queries.jsonl" in flat(res.stdout)
    assert "<bool>" not in res.stdout
    assert "<bool>" not in grdr("ingest", "--help").stdout


def test_eval_runs_onnx_by_default_as_the_readme_does(grdr):
    said = flat(grdr("eval", "--help").stdout)
    assert "--backend <str> onnx (what serving runs) or torch (needs the train extra) [default: onnx]" in said


def test_search_k_has_a_long_form_and_the_http_apis_bound(grdr):
    res = grdr("search", "cats", "--model", "nowhere", "--index", "cat", "--k", "101")
    assert res.exit_code == 2 and "at most 100" in flat(res.stderr)
    assert "cannot reach" not in res.output  # refused before any network call


def test_filters_from_flags():
    from cli.query_commands import parse_filters

    assert parse_filters(["tags=food", "tags=cooking", "duration_max=60", "genre=news", "fields.lang=en"]) == {
        "tags": ["food", "cooking"], "duration_max": 60.0, "fields": {"genre": ["news"], "lang": ["en"]}}
    with pytest.raises(ValueError, match="--filter 'tags': expected KEY=VALUE"):
        parse_filters(["tags"])
    with pytest.raises(ValueError, match="--filter duration_min: 'long' is not a number of seconds"):
        parse_filters(["duration_min=long"])


def test_index_drop_asks_and_refuses_without_a_terminal_unless_yes(grdr):
    res = grdr("index", "drop", "cat")
    assert res.exit_code == 1 and "pass --yes" in flat(res.stderr)
    assert "cannot reach" not in res.output  # nothing was asked of OpenSearch
    res = grdr("index", "drop", "cat", "--yes")  # goes ahead: fails only because nothing listens
    assert res.exit_code == 1 and "cannot reach OpenSearch at http://127.0.0.1:" in flat(res.stderr)


def test_errors_name_the_url_and_go_to_stderr(grdr):
    res = grdr("index", "info", "cat")
    url = get_settings().opensearch_url
    assert res.exit_code == 1 and res.stdout == ""
    assert f"cannot reach OpenSearch at {url}: connection refused" in flat(res.stderr)


def test_status_checks_the_cluster_the_settings_point_at(grdr):
    url = get_settings().opensearch_url
    res = grdr("cluster", "status")
    assert res.exit_code == 1
    assert f"cannot reach OpenSearch at {url}" in flat(res.stdout)  # not the local node, whatever runs there
    assert grdr("doctor", "--json").stdout.strip().splitlines()[-1].startswith('{"ok": false')


def test_ingest_of_video_files_without_an_image_encoder_is_refused_before_anything_is_queued(grdr, tiny_model_dir,
                                                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("GRDR_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")  # never reached
    (tmp_path / "clip.mp4").write_bytes(b"x")
    res = grdr("ingest", "--videos", tmp_path / "clip.mp4", "--model", tiny_model_dir, "--index", "cat", "--wait")
    assert res.exit_code == 1
    said = flat(res.stderr)
    assert "--image-encoder: 1 records are video files" in said and "Nothing was queued" in said
