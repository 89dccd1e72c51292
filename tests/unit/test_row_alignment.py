"""Line i of catalog.jsonl is row i of features.npy: a blank line is a bad record at its line number, never a
shift of the rows after it; counts that differ are refused with lines, blank lines and rows counted."""
import json

import numpy as np
import pytest

from grdr_plugin.data import DatasetError, load_dataset
from ingest.schemas import RecordError
from ingest.sources import Record, SourceError, plan_dataset, read_records

LINES = 301
BLANK = (57, 200)  # 1-based line numbers left blank


def held_out_catalog(root, lines=LINES, blank=BLANK, rows=None, trailing_blank=0):
    """A catalog whose feature row i is the number i (so a shifted row shows), with some lines blank."""
    root.mkdir()
    text = "".join("\n" if n in blank else json.dumps({"video_id": f"v{n}", "split": "unseen"}) + "\n"
                   for n in range(1, lines + 1))
    (root / "catalog.jsonl").write_text(text + "\n" * trailing_blank)
    rows = lines if rows is None else rows
    np.save(root / "features.npy", np.arange(rows, dtype=np.float32)[:, None].repeat(4, 1) + 1)
    return root


def test_ingest_of_a_row_aligned_catalog_with_blank_lines_keeps_every_row_and_reports_each_blank_line(tmp_path):
    root = held_out_catalog(tmp_path / "ds", trailing_blank=2)  # trailing blank lines are an editor's, not rows
    plan = plan_dataset(root, batch_size=100)
    assert sum(n for _, n in plan) == LINES
    records = [r for src, _ in plan for r in read_records(src)]
    good = [r for r in records if isinstance(r, Record)]
    assert len(good) == LINES - len(BLANK)
    assert all(r.row == int(r.video_id[1:]) - 1 for r in good)  # video of line n reads row n - 1, after a blank too
    errors = [r for r in records if isinstance(r, RecordError)]
    assert [e.video_id for e in errors] == [f"catalog.jsonl line {n}" for n in BLANK]
    assert errors[0].reason.startswith("blank line: row 56 of features.npy has no video")


def test_ingest_refuses_counts_that_differ_saying_how_many_lines_blank_lines_and_rows(tmp_path):
    root = held_out_catalog(tmp_path / "ds", rows=LINES - len(BLANK))
    with pytest.raises(SourceError, match=r"features.npy has 299 rows but catalog.jsonl has 301 lines \(2 of them "
                                          r"blank"):
        plan_dataset(root, batch_size=100)


def test_training_data_keeps_rows_aligned_and_leaves_blank_lines_rows_out(tmp_path):
    ds = load_dataset(held_out_catalog(tmp_path / "ds"))
    assert ds.blank_lines == list(BLANK) and ds.n_videos == LINES - len(BLANK)
    for i, vid in enumerate(ds.video_ids):  # the feature of video vN is the number N, wherever it sits
        assert ds.features[i, 0] == int(vid[1:])


def test_training_data_refuses_counts_that_differ_with_the_same_counts(tmp_path):
    root = held_out_catalog(tmp_path / "ds", rows=LINES - len(BLANK))
    with pytest.raises(DatasetError, match=r"features.npy has 299 rows but catalog.jsonl has 301 lines \(2 of them "
                                           r"blank"):
        load_dataset(root)
