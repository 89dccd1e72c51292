"""The submitting side refuses what it knows will fail and never waits for nobody (no broker needed: the
batches' results and the worker probe are stand-ins)."""
import re
from pathlib import Path

import pytest

from ingest.schemas import Target
from ingest.submit import NoWorkerError, Plan, Submitted, make_plan, refuse_videos_without_encoder, wait, worker_command

ROOT = Path(__file__).resolve().parents[2]
TARGET = Target(index="cat-v000001", alias="cat", publish_as="cat", fingerprint="f" * 16, model_dir="/m")


class Result:
    """An AsyncResult stand-in in `state`; with done_after, SUCCESS once asked that many times whether ready."""

    def __init__(self, state: str = "PENDING", done_after: int = 0):
        self.state = state
        self.result = {"indexed": 2}
        self.asked = 0
        self.done_after = done_after

    def ready(self) -> bool:
        self.asked += 1
        if self.done_after and self.asked >= self.done_after:
            self.state = "SUCCESS"
        return self.state == "SUCCESS"

    def successful(self) -> bool:
        return True


def submitted(*states: str) -> Submitted:
    return Submitted(TARGET, [Result(s) for s in states], [5] * len(states), group_id="g1", queue="q1")


def test_a_run_nobody_takes_stops_and_says_exactly_what_stays_queued():
    sub = submitted("SUCCESS", "PENDING", "PENDING")
    with pytest.raises(NoWorkerError) as err:
        wait(sub, poll_s=0.01, stall_s=0.05, workers=lambda: [])
    said = str(err.value)
    assert "no worker consumes the ingest queue 'q1'" in said and f"`{worker_command('q1')}`" in said
    assert "1 of 3 batches are done (group g1, index cat-v000001); 2 batches (10 videos) stay queued on 'q1'" in said


def test_a_running_batch_is_waited_for_without_asking_anyone():
    sub = Submitted(TARGET, [Result("STARTED", done_after=30)], [5], group_id="g1", queue="q1")
    asked = []
    summary, _ = wait(sub, poll_s=0.01, stall_s=0.02, workers=lambda: asked.append(1) or [])
    # its worker runs it (a `-P solo` worker busy with a batch answers nobody): no question, no verdict
    assert summary.indexed == 2 and asked == []


def test_idle_workers_on_the_queue_are_waited_for():
    sub = submitted("PENDING")
    asked = []

    def workers():  # a worker is there; on the second question its batch is done
        asked.append(1)
        if len(asked) == 2:
            sub.results[0].state = "SUCCESS"
        return ["w1@host"]

    summary, _ = wait(sub, poll_s=0.01, stall_s=0.02, workers=workers)
    assert summary.indexed == 2 and len(asked) >= 2


def test_video_files_without_an_image_encoder_are_refused_before_queuing(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "f.npy").write_bytes(b"x")
    (tmp_path / "v.jsonl").write_text('{"video_id": "a", "path": "a.mp4"}\n'
                                      '{"video_id": "b", "features_path": "f.npy"}\n'
                                      '{"video_id": "c", "features": [0.1, 0.2]}\n')
    searched = tmp_path / "m" / "onnx" / "image_encoder.onnx"
    for spec, count in ((str(tmp_path / "*.mp4"), 1), (str(tmp_path / "v.jsonl"), 1)):
        with pytest.raises(ValueError, match=rf"--image-encoder: {count} records are video files .* no image encoder "
                                             rf"was given or found at {re.escape(str(searched))}.*Nothing was queued"):
            refuse_videos_without_encoder(make_plan(videos=spec, batch_size=4), searched)
    (tmp_path / "f.jsonl").write_text('{"video_id": "b", "features_path": "f.npy"}\n')
    refuse_videos_without_encoder(make_plan(videos=str(tmp_path / "f.jsonl"), batch_size=4), searched)  # features: ok
    refuse_videos_without_encoder(Plan([]), searched)


def test_every_worker_command_the_docs_give_logs_the_batches_it_takes():
    """`celery -A ingest worker` logs received and finished tasks only at -l info (its default is warning): every
    command a user is told to run says so (README, the docs' code blocks, grdr's own messages)."""
    assert "-l info" in worker_command("q")
    commands = [line for line in (ROOT / "README.md").read_text().splitlines() if "celery -A ingest worker" in line]
    for doc in sorted((ROOT / "docs").glob("*.md")):
        blocks = doc.read_text().split("```")[1::2]  # what lies inside code fences
        commands += [line for block in blocks for line in block.splitlines() if "celery -A ingest worker" in line]
    assert commands
    for line in commands:
        assert "-l info" in line or "--loglevel=INFO" in line, line.strip()
