"""The HF-generate reference decoder (benchmarks only): valid IDs only, same beams as ours."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from grdr_plugin.decoding import constrained_beam_search, prefix_tables  # noqa: E402
from grdr_plugin.model.runtime import TorchBackend  # noqa: E402
from grdr_plugin.model.tiny import build_tiny_model  # noqa: E402
from query.reference_decoder import (  # noqa: E402
    HFCodeDecoder,
    agreement,
    build_trie,
    concat_memories,
    hf_beam_search,
    pack_memory,
    trie_prefix_fn,
)

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
