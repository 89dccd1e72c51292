"""Reading and planning ingest inputs: per-line reasons, byte-range batches, row alignment."""
import json

import numpy as np
import pytest

from ingest.schemas import RecordError
from ingest.sources import (
    CatalogEntry,
    Record,
    SourceError,
    cut_jsonl,
    parse_line,
    plan_dataset,
    plan_videos,
    read_records,
)


def _write_dataset(root, lines, dim=8, frames=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "catalog.jsonl").write_text("".join(line + "\n" for line in lines))
    n = len(lines)  # line i is row i, blank lines included
    np.save(root / "features.npy", np.ones((n, dim), np.float16))
    if frames:
        np.save(root / "frames.npy", np.ones((n, frames, dim), np.float16))
    return root


@pytest.mark.parametrize("raw, vid, reason", [
    (b"{not json", "c.jsonl line 3", "bad line: invalid JSON"),
    (b"[1, 2]", "c.jsonl line 3", "bad line: expected a JSON object, got list"),
    (b'{"title": "x"}', "c.jsonl line 3", "missing field 'video_id'"),
    (b'{"video_id": "  "}', "c.jsonl line 3", "bad field 'video_id'"),
    (b'{"video_id": "v1", "grdr_vec": [1]}', "v1", "bad line: field 'grdr_vec' is reserved"),
    (b'{"video_id": "v1", "duration_s": -3}', "v1", "bad field 'duration_s'"),
    (('{"video_id": "%s"}' % ("x" * 600)).encode(), "c.jsonl line 3", "bad field 'video_id'"),
])
def test_bad_lines_come_back_with_a_reason(raw, vid, reason):
    err = parse_line(raw, "c.jsonl line 3")
    assert isinstance(err, RecordError)
    assert err.video_id == vid
    assert err.reason.startswith(reason)


def test_good_line_keeps_metadata_and_normalises_tags():
    entry = parse_line(b'{"video_id": " v1 ", "title": "t", "tags": "cats", "lang": "en", '
                       b'"features_path": "a.npy"}', "")
    assert isinstance(entry, CatalogEntry)
    assert entry.metadata() == {"video_id": "v1", "title": "t", "tags": ["cats"], "lang": "en"}


def test_cuts_cover_every_line_once_and_blank_lines_do_not_count(tmp_path):
    lines = [json.dumps({"video_id": f"v{i}"}) if i % 4 else "" for i in range(23)]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cuts, rows = cut_jsonl(path, batch_size=5)
    assert rows == sum(1 for line in lines if line)
    assert [c.size for c in cuts] == [5, 5, 5, 2]
    assert cuts[0].byte_start == 0 and cuts[-1].byte_stop == path.stat().st_size
    assert all(a.byte_stop == b.byte_start for a, b in zip(cuts, cuts[1:]))
    assert [c.first_row for c in cuts] == [0, 5, 10, 15]


def test_read_records_aligns_rows_with_lines_blank_ones_included_and_filters_split(tmp_path):
    lines = ['{"video_id": "a", "split": "seen"}', "", '{"video_id": "b", "split": "unseen"}', "{oops",
             '{"video_id": "c", "split": "unseen"}', '{"video_id": "d", "split": "seen"}']
    root = _write_dataset(tmp_path / "ds", lines)
    plan = plan_dataset(root, batch_size=2, split="unseen")
    assert [n for _, n in plan] == [2, 2]  # blank + b, then bad line + c (bad and blank lines whatever the split)
    got = [item for src, _ in plan for item in read_records(src)]
    assert [(r.video_id, r.row) for r in got if isinstance(r, Record)] == [("b", 2), ("c", 4)]
    errors = [r for r in got if isinstance(r, RecordError)]
    assert [e.video_id for e in errors] == ["catalog.jsonl line 2", "catalog.jsonl line 4"]
    assert errors[0].reason.startswith("blank line: row 1 of features.npy has no video")


def test_dataset_with_rows_that_do_not_match_lines_is_refused(tmp_path):
    root = _write_dataset(tmp_path / "ds", ['{"video_id": "a"}', '{"video_id": "b"}'])
    np.save(root / "features.npy", np.ones((3, 8), np.float16))
    with pytest.raises(SourceError, match="3 rows but catalog.jsonl has 2 lines"):
        plan_dataset(root, 10)


def test_videos_glob_and_duplicate_names(tmp_path):
    for name in ("a.mp4", "b.avi", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    plan = plan_videos(str(tmp_path / "*"), batch_size=1)
    assert [src.paths for src, _ in plan] == [[str(tmp_path / "a.mp4")], [str(tmp_path / "b.avi")]]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"x")
    with pytest.raises(SourceError, match="both get video_id 'a.mp4'"):
        plan_videos(str(tmp_path / "**" / "*.mp4"), batch_size=4)
    with pytest.raises(SourceError, match="nothing matches"):
        plan_videos(str(tmp_path / "*.mkv"), batch_size=4)


def test_video_catalog_resolves_relative_paths_and_needs_a_path(tmp_path):
    cat = tmp_path / "videos.jsonl"
    cat.write_text('{"video_id": "a", "path": "clips/a.mp4"}\n{"video_id": "b"}\n'
                   '{"video_id": "c", "features_path": "/f.npy"}\n')
    (src, n), = plan_videos(str(cat), batch_size=10)
    a, b, c = read_records(src)
    assert a.path == tmp_path / "clips" / "a.mp4" and a.meta["path"] == "clips/a.mp4"
    assert isinstance(b, RecordError) and b.reason == "missing field 'path' (or 'features_path', 'features')"
    assert c.features_path.as_posix() == "/f.npy" and c.path is None
