"""Training on a tiny synthetic dataset: artifacts, repeatability, resume, no test-query leak."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from grdr_plugin.data import load_dataset  # noqa: E402
from grdr_plugin.model.config import ModelConfig, TrainConfig, choose_codebook_size  # noqa: E402
from tests.unit.test_data import make_dataset  # noqa: E402


def tiny(views: int = 2, decoder_layers: int = 1) -> tuple[ModelConfig, TrainConfig]:
    cfg = ModelConfig(views=views, levels=3, codebook_size=4, feature_dim=16, frames=3, code_dim=16, rerank_dim=8,
                      decoder_dim=16, decoder_layers=decoder_layers, decoder_heads=2, hidden_dim=32)
    tc = TrainConfig(batch_size=8, threads=1, epochs_rerank=1, epochs_warmup=1, epochs_per_level=1, epochs_fit=1)
    return cfg, tc


def test_codebook_size_rule():
    assert choose_codebook_size(1576, 4, 3) == 64
    assert choose_codebook_size(800, 4, 3) == 64
    assert choose_codebook_size(10, 1, 3) == 16
    assert choose_codebook_size(10**7, 4, 3) == 256


@pytest.fixture
def encoded_texts(monkeypatch) -> list[str]:
    """Every caption training sends through the text encoder, in order."""
    import grdr_plugin.model.text as text_mod

    seen: list[str] = []
    real = text_mod.encode_texts

    def spy(tok, model, texts, *a, **k):
        seen.extend(texts)
        return real(tok, model, texts, *a, **k)

    monkeypatch.setattr(text_mod, "encode_texts", spy)
    return seen


def test_no_test_query_reaches_training(tmp_path, encoded_texts):
    import grdr_plugin.model.text as text_mod
    from grdr_plugin.model.train import Trainer

    ds = load_dataset(make_dataset(tmp_path / "d"))
    seen_texts = encoded_texts
    cfg, tc = tiny()
    tr = Trainer(ds, tmp_path / "out", cfg, tc)
    tok, enc = text_mod.load_encoder(cfg.encoder)
    tr.encode_captions(enc, tok)
    test_texts = {ds.query_text[i] for i in ds.test_queries()}
    assert seen_texts and not (set(seen_texts) & test_texts)
    assert not any("heldout" in t for t in seen_texts)
    assert ds.video_split[tr.q_video].all()  # no unseen video is a training target
    assert set(tr.train_q.tolist()).isdisjoint(ds.test_queries().tolist())


def test_train_writes_model_folder_and_is_repeatable(tmp_path):
    from grdr_plugin.model.train import run_training

    ds = load_dataset(make_dataset(tmp_path / "d"))
    cfg, tc = tiny()
    s1 = run_training(ds, tmp_path / "m1", cfg, tc, log=lambda *_: None, export_onnx=False)
    for f in ("config.json", "model.safetensors", "tokenizer/tokenizer.json", "training_curves.png", "stats.json",
              "history.json"):
        assert (tmp_path / "m1" / f).is_file(), f
    assert not list((tmp_path / "m1").rglob("*.pt")) and not list((tmp_path / "m1").rglob("*.pkl"))
    stats = json.loads((tmp_path / "m1" / "stats.json").read_text())
    assert len(stats["all"]["levels"]) == 3 and stats["all"]["videos"] == 12
    s2 = run_training(ds, tmp_path / "m2", cfg, tc, log=lambda *_: None, export_onnx=False)
    assert s1["fingerprint"] == s2["fingerprint"]  # same seed -> same weights


def test_resume_continues_to_same_weights(tmp_path):
    from grdr_plugin.model.train import run_training

    ds = load_dataset(make_dataset(tmp_path / "d"))
    cfg, tc = tiny()
    # a run stopped after 3 epochs (mid-way through the progressive levels), then resumed
    part = tmp_path / "part"
    tc2 = tc.model_copy(update={"epochs_per_level": 2})
    full = run_training(ds, tmp_path / "full2", cfg, tc2, log=lambda *_: None, export_onnx=False)
    stopped = run_training(ds, part, cfg, tc2, log=lambda *_: None, export_onnx=False, stop_after=4)
    assert stopped == {"stopped": True, "epochs_done": 4}
    state = json.loads((part / "checkpoint" / "state.json").read_text())
    assert (state["phase_idx"], state["epoch"]) == (2, 1)  # level1, its 2nd epoch done
    resumed = run_training(ds, part, cfg, tc2, resume=True, log=lambda *_: None, export_onnx=False)
    assert resumed["fingerprint"] == full["fingerprint"]


def test_views_and_codes_shapes(tmp_path):
    from grdr_plugin.model.nets import GRDR

    cfg, _ = tiny(views=3)
    m = GRDR(cfg)
    frames, pooled = torch.randn(5, 3, 16), torch.randn(5, 16)
    codes = m.video_codes(frames, pooled)
    assert codes.shape == (5, 3, 3) and codes.dtype == torch.int64 and int(codes.max()) < 4
    v = m.reranker.video_vec(frames, pooled)
    assert torch.allclose(v.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert float(m.decoder.scale().detach()) <= 100.0


def test_losses_behave():
    from grdr_plugin.model import losses

    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    views = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=-1)
    q_vid = torch.tensor([0, 0, 1, 1, 2, 2])
    route = torch.tensor([0, 1, 0, 1, 0, 1])
    good = views[q_vid, route]
    l_rand = losses.query_view_contrastive(t, views, q_vid, route, 0.07)
    l_good = losses.query_view_contrastive(good, views, q_vid, route, 0.07)
    assert float(l_good) < float(l_rand)
    logits = torch.randn(4, 3, 5)
    target = torch.randint(0, 5, (4, 3))
    assert float(losses.generation_loss(logits, target, 0.1)) > 0


def test_collision_stats():
    from grdr_plugin.model.train import collision_stats

    codes = np.array([[[0, 0, 0], [1, 1, 1]], [[0, 0, 0], [2, 2, 2]]])
    st = collision_stats(codes, 4)
    assert st["ids_distinct"] == 3 and st["videos_per_id_max"] == 2
    assert st["levels"][0]["utilisation"] == 0.75


def test_holdout_training_never_sees_validation_or_test_queries(tmp_path, encoded_texts):
    """`grdr train --holdout`: only the derived train captions are encoded for training (and
    --decoder-layers reaches the model's config.json)."""
    from typer.testing import CliRunner

    from cli.main import app
    from grdr_plugin.validation import holdout_split, load_spec

    data = make_dataset(tmp_path / "d")  # 12 videos: every caption text is distinct
    encoded = encoded_texts
    small = [f"--set={k}=1" for k in ("epochs_rerank", "epochs_warmup", "epochs_per_level", "epochs_fit")]
    res = CliRunner().invoke(app, ["train", "--dataset", str(data), "--out", str(tmp_path / "m"), "--holdout", "0.25",
                                   "--no-onnx", "--threads", "1", "--decoder-layers", "2", "--set=batch_size=8",
                                   *small])
    assert res.exit_code == 0, res.output
    assert ModelConfig.model_validate_json((tmp_path / "m" / "config.json").read_text()).decoder_layers == 2
    spec = load_spec(tmp_path / "m")
    assert spec is not None and spec.fraction == 0.25
    ds = load_dataset(data)
    val = holdout_split(ds, spec)
    held_out = {val.query_text[i] for i in val.test_queries()} | {ds.query_text[i] for i in ds.test_queries()}
    assert encoded and not set(encoded) & held_out
    assert set(encoded) == {val.query_text[i] for i in val.train_queries()}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("tabled", [True, False])
def test_level_decoding_equals_full_decoding(layers, tabled):
    """decode_level (one new position: cached self-attention, the first block and the output
    head's prefix terms from per-prefix tables or computed, one memory every row shares) ==
    decode(...)[:, -1] for every prefix length."""
    from grdr_plugin.model.nets import GRDR

    cfg, _ = tiny(decoder_layers=layers)
    model = GRDR(cfg).eval()
    dec, books = model.decoder, model.rq.codebooks
    g = torch.Generator().manual_seed(0)
    rows = 5
    states = torch.randn(1, 6, cfg.text_dim, generator=g)
    mask = torch.ones(states.shape[:2], dtype=torch.int64)
    mask[0, 4:] = 0
    text_vec = torch.nn.functional.normalize(torch.randn(1, cfg.code_dim, generator=g), dim=-1)
    with torch.no_grad():
        kv, bias = dec.memory(states, mask, text_vec)
        full_kv = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in kv]
        full_bias, full_text = bias.expand(rows, -1, -1, -1), text_vec.expand(rows, -1)
        cached = layers - tabled
        past_k = past_v = torch.zeros(rows, cached, dec.heads, 0, cfg.decoder_dim // dec.heads)
        prefix = torch.zeros(rows, 0, dtype=torch.int64)
        for n in range(cfg.levels):
            want = dec.decode(full_kv, full_bias, full_text, prefix, books)[:, -1].log_softmax(-1)
            tables = dec.level_tables(n, books) if tabled else None
            folded = dec.fold_memory(kv, bias)
            got, new_k, new_v = dec.decode_level(folded, text_vec, prefix, past_k, past_v, books, tables)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            assert new_k.shape == (rows, cached, dec.heads, 1, cfg.decoder_dim // dec.heads)
            past_k, past_v = torch.cat([past_k, new_k], dim=3), torch.cat([past_v, new_v], dim=3)
            prefix = torch.cat([prefix, torch.randint(0, cfg.codebook_size, (rows, 1), generator=g)], dim=1)
