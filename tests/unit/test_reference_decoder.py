"""The HF-generate reference decoder (benchmarks only): valid IDs only, same beams as ours."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bench.reference_decoder import (  # noqa: E402
    HFCodeDecoder,
    agreement,
    build_trie,
    concat_memories,
    hf_beam_search,
    pack_memory,
    trie_prefix_fn,
)
from grdr_plugin.decoding import constrained_beam_search, prefix_tables  # noqa: E402
from grdr_plugin.model.torch_backend import TorchBackend  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

C, L = 8, 3  # the tiny model's codebook size and levels
TEXTS = ["a man is cooking pasta", "a dog runs on the grass", "x", "two people dance at a wedding party"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    model, enc, tok = build_tiny_model(tmp_path_factory.mktemp("tiny"), export=False)
    be = TorchBackend.from_parts(model, enc, tok)
    return be, HFCodeDecoder.from_backend(be)


def _ids(n: int, seed: int = 0) -> np.ndarray:
    return np.unique(np.random.default_rng(seed).integers(0, C, size=(n, L)), axis=0)


def test_trie_and_prefix_fn():
    ids = np.array([[1, 2, 3], [1, 2, 4], [5, 0, 0]])
    trie = build_trie(ids)
    assert trie == {1: {2: {3: {}, 4: {}}}, 5: {0: {0: {}}}}
    fn = trie_prefix_fn(trie, dead_end_token=C + 1)
    start = C  # the decoder-start token leads every sequence
    assert sorted(fn(0, torch.tensor([start]))) == [1, 5]
    assert sorted(fn(0, torch.tensor([start, 1, 2]))) == [3, 4]
    assert fn(0, torch.tensor([start, 2])) == [C + 1]  # off the trie: only the dead-end token


def test_step_logits_match_torch_step_fn(tiny):
    """The wrapper's next-token log-softmax over C+2 tokens equals TorchBackend.step_fn's over C."""
    be, hf = tiny
    q = be.encode_queries(TEXTS)
    mem = pack_memory(q.state)
    step = be.step_fn(q)
    rows = np.arange(len(TEXTS), dtype=np.int64)
    rng = np.random.default_rng(1)
    for t in range(L):
        prefix = rng.integers(0, C, size=(len(TEXTS), t)).astype(np.int64)
        dec_ids = torch.cat([torch.full((len(TEXTS), 1), C), torch.from_numpy(prefix)], dim=1)
        with torch.inference_mode():
            logits = hf(decoder_input_ids=dec_ids, encoder_outputs=mem).logits[:, -1]
        lp = logits.log_softmax(-1).numpy()
        assert np.all(np.isneginf(lp[:, C:]))  # start / EOS tokens are never scored
        np.testing.assert_allclose(lp[:, :C], step(rows, prefix), rtol=0, atol=1e-5)


@pytest.mark.parametrize("beam", [1, 4, 16, 64])
def test_hf_generate_emits_only_valid_ids(tiny, beam):
    be, hf = tiny
    ids = _ids(40)
    valid = {tuple(r) for r in ids.tolist()}
    mem = pack_memory(be.encode_queries(TEXTS).state)
    codes, scores = hf_beam_search(hf, mem, trie_prefix_fn(build_trie(ids), C + 1), beam)
    assert codes.shape == (len(TEXTS), beam, L)
    for qi in range(len(TEXTS)):
        live = np.isfinite(scores[qi])
        # every beam is either a valid ID or padding (only when there are fewer IDs than beams)
        assert all(tuple(c) in valid for c in codes[qi][live].tolist())
        assert (codes[qi][~live] == -1).all()
        assert live.sum() == min(beam, len(ids))
        assert len({tuple(c) for c in codes[qi][live].tolist()}) == live.sum()  # no duplicates
        assert np.all(np.diff(scores[qi][live]) <= 1e-6)  # best first


@pytest.mark.parametrize("beam", [1, 5, 20, 100])
def test_hf_generate_agrees_with_our_beam_search(tiny, beam):
    """Same beams, same order, same scores (float32 HF sums vs float64 ours: 1e-4) as
    constrained_beam_search with TorchBackend.step_fn; beam 100 > #IDs checks padding too.
    Exact ties could in principle order differently (torch.topk vs numpy stable argsort);
    random continuous weights make them vanishingly unlikely, and none occur here."""
    be, hf = tiny
    ids = _ids(60, seed=3)
    q = be.encode_queries(TEXTS)
    theirs, s_theirs = hf_beam_search(hf, pack_memory(q.state), trie_prefix_fn(build_trie(ids), C + 1), beam)
    ours, s_ours = constrained_beam_search(be.step_fn(q), len(TEXTS), L, C, prefix_tables(ids, C), beam)
    np.testing.assert_array_equal(theirs, ours)
    np.testing.assert_allclose(s_theirs, s_ours, rtol=0, atol=1e-4)  # -inf padding compares equal


def test_batched_memories_of_different_lengths(tiny):
    """Per-query memories concatenated with padding decode like the queries one by one."""
    be, hf = tiny
    ids = _ids(50, seed=5)
    fn = trie_prefix_fn(build_trie(ids), C + 1)
    mems = [pack_memory(be.encode_queries([t]).state) for t in TEXTS]
    assert len({m.last_hidden_state.shape[1] for m in mems}) > 1  # lengths really differ
    batched, s_b = hf_beam_search(hf, concat_memories(mems), fn, 8)
    for i, m in enumerate(mems):
        one, s_one = hf_beam_search(hf, m, fn, 8)
        np.testing.assert_array_equal(batched[i], one[0])
        np.testing.assert_allclose(s_b[i], s_one[0], atol=1e-4)


def test_agreement_metric():
    a = [[(1, 2, 3), (4, 5, 6)], [(0, 0, 0)]]
    b = [[(4, 5, 6), (1, 2, 3)], [(0, 0, 1)]]
    assert agreement(a, b) == {"overlap": 0.5, "top1": 0.0, "same_order": 0.0}


@pytest.mark.parametrize("encode", ["per-call", "up-front"])
def test_measure_times_each_decode_after_the_encoding_its_protocol_names(tiny_model_dir, monkeypatch, encode):
    """per-call: every timed decode directly follows its own stack's encoding of the same query
    (torch for hf_generate and ours_torch, onnxruntime for ours_onnx), as in serving; up-front:
    every query is encoded before the first decode.  Either way the three methods agree."""
    import bench.reference_decoder as rd
    from grdr_plugin.decoding import validity_masks
    from grdr_plugin.runtime import ModelRuntime

    torch_be = TorchBackend(tiny_model_dir)
    onnx_be = ModelRuntime(tiny_model_dir)
    size = torch_be.cfg.codebook_size
    assert size == C
    ids = _ids(40, seed=11)  # codes < C = the tiny model's codebook size
    tables = prefix_tables(ids, size)
    bench = rd.Bench(torch_be=torch_be, onnx_be=onnx_be, hf=HFCodeDecoder.from_backend(torch_be),
                     trie_fn=trie_prefix_fn(build_trie(ids), size + 1), tables=tables,
                     masks=validity_masks(tables, size), texts=TEXTS, n_ids=len(np.unique(ids, axis=0)))
    events: list[tuple[str, tuple[str, ...]]] = []
    for be, stack in ((torch_be, "torch"), (onnx_be, "onnx")):
        encode_queries = be.encode_queries
        monkeypatch.setattr(be, "encode_queries", lambda texts, f=encode_queries, s=stack: (
            events.append((f"encode-{s}", tuple(texts))) or f(texts)))
    run_one = rd._run_one

    def recorded(bench_, method, tq, mem, oq, beam):
        q = tq if tq is not None else oq
        events.append((method, len(q.query_vec)))
        return run_one(bench_, method, tq, mem, oq, beam)

    monkeypatch.setattr(rd, "_run_one", recorded)
    report = rd.measure(bench, beam=5, warmup=1, encode=encode)
    assert report["encode"] == encode and report["queries"] == len(TEXTS)
    assert all(v["overlap"] == 1.0 for v in report["agreement"].values())
    runs = [i for i, (name, _) in enumerate(events) if name in rd.METHODS]
    assert len(runs) == (1 + len(TEXTS)) * len(rd.METHODS)  # warm-up + timed
    if encode == "up-front":
        assert max(i for i, (name, _) in enumerate(events) if name.startswith("encode")) < runs[0]
    else:
        groups = [0] * len(rd.METHODS) + [g for g in range(len(TEXTS)) for _ in rd.METHODS]  # warm-up, then timed
        for i, g in zip(runs, groups):
            stack = "onnx" if events[i][0] == "ours_onnx" else "torch"
            assert events[i - 1] == (f"encode-{stack}", (TEXTS[g],))
    with pytest.raises(ValueError, match="encode"):
        rd.measure(bench, beam=5, encode="sometimes")
