"""The submitting side refuses what it knows will fail, never waits for nobody, and sends again what the broker lost
(no broker needed: the batches' results, the worker probe and the broker's view are stand-ins; sending uses
Celery's in-memory broker)."""
import logging
import re
import time
from pathlib import Path

import pytest

from ingest.schemas import Target
from ingest.submit import (
    BrokerView,
    NoWorkerError,
    Plan,
    Submitted,
    lost_batches,
    make_plan,
    refuse_videos_without_encoder,
    send,
    wait,
    worker_command,
)

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


# ---- a batch the broker lost is sent again ----

class Sent:
    """A kept signature stand-in: resend() calls apply_async; the batch then finishes (a worker ran the copy)."""

    def __init__(self, result: Result):
        self.result = result
        self.calls = 0

    def apply_async(self, group_id=None):
        self.calls += 1
        self.result.state = "SUCCESS"


def lost_run(*results: Result) -> Submitted:
    sub = Submitted(TARGET, list(results), [5] * len(results), group_id="g1", queue="q1")
    sub.sent = [Sent(r) for r in results]
    for i, r in enumerate(results):
        r.id = f"t{i}"
    return sub


def test_only_batches_neither_queued_nor_held_by_a_live_worker_are_lost():
    pending = {0: "t0", 2: "t2", 5: "t5"}
    assert lost_batches(pending, BrokerView(queued=0, held=frozenset({"t2"}))) == [0, 5]
    assert lost_batches(pending, BrokerView(queued=0, held=frozenset())) == [0, 2, 5]
    assert lost_batches(pending, BrokerView(queued=0, held=frozenset({"t0", "t2", "t5"}))) == []
    # a message waits in the queue: it may be any of them, so none is judged lost
    assert lost_batches(pending, BrokerView(queued=1, held=frozenset())) == []


def test_a_lost_batch_is_sent_again_under_its_task_id_once_no_batch_finished_for_the_bound():
    sub = lost_run(Result("SUCCESS"), Result("PENDING"))
    looked = []

    def broker(task_ids):
        looked.append((time.monotonic(), task_ids))
        return BrokerView(queued=0, held=frozenset())

    t0 = time.monotonic()
    summary, extra = wait(sub, poll_s=0.01, stall_s=60, resend_after_s=0.2, workers=lambda: ["w"], broker=broker)
    assert summary.indexed == 4 and extra["resent"] == 1
    assert [s.calls for s in sub.sent] == [0, 1]
    assert [ids for _, ids in looked] == [["t1"]] and looked[0][0] - t0 >= 0.2


def test_a_batch_a_worker_holds_or_that_may_wait_in_the_queue_is_not_sent_again():
    held, queued = Result("STARTED", done_after=40), Result("PENDING", done_after=40)
    sub = lost_run(held, queued)
    views = iter([BrokerView(queued=0, held=frozenset({"t0", "t1"})), BrokerView(queued=3, held=frozenset())] * 20)
    summary, extra = wait(sub, poll_s=0.01, stall_s=60, resend_after_s=0.02, workers=lambda: ["w"],
                          broker=lambda ids: next(views))
    assert summary.indexed == 4 and extra["resent"] == 0 and [s.calls for s in sub.sent] == [0, 0]


def test_a_batch_that_finished_while_the_workers_were_asked_is_not_sent_again():
    late = Result("PENDING")
    sub = lost_run(late)

    def broker(task_ids):  # the batch's result arrives while the workers are asked
        late.state = "SUCCESS"
        return BrokerView(queued=0, held=frozenset())

    _, extra = wait(sub, poll_s=0.01, stall_s=60, resend_after_s=0.05, workers=lambda: ["w"], broker=broker)
    assert extra["resent"] == 0 and sub.sent[0].calls == 0


def resend_run(sub, answers, caplog) -> dict:
    """`wait` over `sub` with a broker that gives `answers` in turn (an exception is raised); its extras."""
    script = iter(answers)

    def broker(task_ids):
        answer = next(script)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING, logger="ingest.submit"):
        _, extra = wait(sub, poll_s=0.01, stall_s=60, resend_after_s=0.05, workers=lambda: ["w"], broker=broker)
    return extra


def test_an_unreachable_broker_postpones_the_judgement(caplog):
    """A broker that fails twice in a row is down: nothing is judged until the next look, a bound later."""
    from kombu.exceptions import OperationalError

    sub = lost_run(Result("PENDING"))
    down = OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    # asked twice in a row (a stale pooled connection fails once), then again a bound later
    extra = resend_run(sub, [down, down, BrokerView(queued=0, held=frozenset())], caplog)
    assert extra["resent"] == 1
    said = [r.getMessage() for r in caplog.records]
    assert "cannot look for lost batches: OperationalError('Error 111" in said[0]
    assert said[1].startswith("batch 1 of 1 (5 videos, task t0) sent again")


@pytest.mark.parametrize("batches", [1, 3])
@pytest.mark.parametrize("chord", [False, True])
def test_resend_publishes_the_message_that_was_sent(batches, chord):
    """Same task id, group, position in the group and chord callback: a worker's result is the run's, and a chord
    (--reindex) counts the batch once however many copies run (Celery's Redis backend dedups by id and index)."""
    from celery import Celery
    from celery.signals import before_task_publish

    app = Celery("resend-test", broker="memory://", backend="cache+memory://")

    @app.task(name="t.batch")
    def task(payload):
        return payload

    @app.task(name="t.done")
    def callback(summaries):
        return summaries

    published = []

    def record(headers=None, body=None, **_):
        if headers["task"] == "t.batch":
            published.append((headers["id"], headers["group"], headers["group_index"], body[0],
                              (body[2].get("chord") or {}).get("task")))

    before_task_publish.connect(record)
    try:
        sub = send([task.s({"batch": i}).set(queue="q") for i in range(batches)], [5] * batches, TARGET, "q",
                   callback.s().set(queue="q") if chord else None)
        first = list(published)
        for i in range(batches):
            sub.resend(i)
    finally:
        before_task_publish.disconnect(record)
    assert [p[0] for p in first] == [r.id for r in sub.results]
    assert published[batches:] == first
    assert [(p[2], p[3]) for p in first] == [(i, ({"batch": i},)) for i in range(batches)]
    assert {p[1] for p in first} == {sub.group_id} and {p[4] for p in first} == {"t.done" if chord else None}


def test_a_connection_that_predates_a_broker_restart_is_asked_again_at_once(caplog):
    """The first question after Redis restarted fails on a pooled connection (redis-py's error, not kombu's);
    the second reconnects, and the lost batch is sent in the same look."""
    import redis

    sub = lost_run(Result("PENDING"))
    extra = resend_run(sub, [redis.exceptions.ConnectionError("Connection closed by server."),
                             BrokerView(queued=0, held=frozenset())], caplog)
    assert extra["resent"] == 1 and not any("cannot look" in r.getMessage() for r in caplog.records)
