"""Training: reranker, tokenizer warm-up, progressive co-training by level, then a fit phase.

Phases (each a number of epochs over the train queries of seen videos):

  rerank   dense reranker (text head + video projection), query -> all seen videos softmax
  warmup   views + code-space text head, query-guided contrastive only (no quantisation)
  level1.. co-training with levels 1..l active: contrastive, quantisation/commitment,
           reconstruction, per-level code loss, generation CE (label smoothing).  Level l's
           codebook is k-means-initialised from the current residuals when its phase starts;
           dead codes are re-seeded after every epoch.
  fit      codebooks and views frozen; IDs and routes fixed; decoder + text head fitted.

After every epoch a checkpoint (safetensors + JSON) is written to OUT/checkpoint/; `resume`
continues from it.  Each epoch reseeds torch and numpy from (seed, phase, epoch), so a resumed
run and an uninterrupted one with the same seed produce the same weights.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grdr_plugin.data import Dataset
from grdr_plugin.model.config import ModelConfig, TrainConfig

CHECKPOINT_DIR = "checkpoint"
# Iterations of the k-means that initialises a level's codebook: a starting point that training refines,
# so a rough fit is enough.
KMEANS_ITERS = 15


@dataclass
class Start:
    """A run that starts from a trained model's modules instead of fresh ones (grdr_plugin.model.retokenize)."""

    model: Any  # GRDR with its weights in place
    encoder: Any
    tokenizer: Any
    kmeans_videos: np.ndarray  # video rows whose views seed each level's codebook
    record: dict[str, Any]  # added to train_summary.json: where the run started from


@dataclass
class Phase:
    name: str
    epochs: int
    level: int  # active quantisation levels (0 = none)


def phases(cfg: ModelConfig, tc: TrainConfig) -> list[Phase]:
    out = [Phase("rerank", tc.epochs_rerank, 0), Phase("warmup", tc.epochs_warmup, 0)]
    out += [Phase(f"level{level}", tc.epochs_per_level, level) for level in range(1, cfg.levels + 1)]
    out.append(Phase("fit", tc.epochs_fit, cfg.levels))
    return [p for p in out if p.epochs > 0]


def _kmeans_cosine(x, k: int, iters: int, gen):
    """k-means with cosine assignment and mean centroids (torch, x [n, d]) -> centroids [k, d]."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    cent = x[torch.randperm(n, generator=gen)[: min(k, n)]].clone()
    if cent.shape[0] < k:  # fewer points than codes: duplicate with noise
        extra = cent[torch.randint(0, cent.shape[0], (k - cent.shape[0],), generator=gen)]
        cent = torch.cat([cent, extra + 1e-3 * torch.randn(extra.shape, generator=gen)])
    for _ in range(iters):
        assign = (F.normalize(x, dim=-1) @ F.normalize(cent, dim=-1).T).argmax(-1)
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        cent = torch.where(empty[:, None], cent, sums / counts.clamp(min=1)[:, None])
        if empty.any():  # re-seed empty clusters on random points
            cent[empty] = x[torch.randint(0, n, (int(empty.sum()),), generator=gen)]
    return cent


def kmeans_caption_groups(pooled: np.ndarray, q_video: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Per video, k-means (k = min(K, #captions)) over its train captions -> group id per query."""
    from sklearn.cluster import KMeans

    groups = np.zeros(len(q_video), dtype=np.int64)
    for v in np.unique(q_video):
        rows = np.flatnonzero(q_video == v)
        kk = min(k, len(rows))
        if kk <= 1:
            continue
        km = KMeans(n_clusters=kk, n_init=1, random_state=seed, max_iter=20).fit(pooled[rows])
        groups[rows] = km.labels_
    return groups


class Trainer:
    def __init__(self, ds: Dataset, out: Path, cfg: ModelConfig, tc: TrainConfig, log: Callable[[str], None] = print):
        import torch

        self.torch = torch
        self.ds, self.out, self.cfg, self.tc, self.log = ds, out, cfg, tc, log
        torch.set_num_threads(tc.threads)
        self.device = torch.device(tc.device)
        self.train_q = ds.train_queries()
        self.seen = np.flatnonzero(ds.video_split)
        # seen-video position of each video row (-1 for unseen): targets of the dense softmax
        self.seen_pos = np.full(ds.n_videos, -1, dtype=np.int64)
        self.seen_pos[self.seen] = np.arange(len(self.seen))
        self.kmeans_videos = self.seen  # whose views seed each level's codebook
        self.frames = torch.from_numpy(ds.frames).to(self.device)
        self.pooled = torch.from_numpy(ds.features).to(self.device)
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    # ---------------------------------------------------------------- setup
    def encode_captions(self, encoder, tokenizer, progress=None) -> None:
        from grdr_plugin.model.text import cached_encode

        texts = [self.ds.query_text[i] for i in self.train_q]
        self.text = cached_encode(self.out / "cache", self.cfg.encoder, tokenizer, encoder, texts,
                                  self.cfg.text_max_length, progress)
        self.q_pooled = self.torch.from_numpy(self.text.pooled).to(self.device)
        self.q_video = self.ds.query_video[self.train_q]  # video row of each train caption
        if self.tc.routing == "kmeans":
            self.groups = kmeans_caption_groups(self.text.pooled, self.q_video, self.cfg.views, self.tc.seed)

    def _seed(self, phase_idx: int, epoch: int):
        s = self.tc.seed * 1_000_003 + phase_idx * 1009 + epoch  # primes: distinct seeds per (seed, phase, epoch)
        self.torch.manual_seed(s)
        return np.random.default_rng(s)

    def _params(self, model, phase: Phase):
        if phase.name == "rerank":
            mods = [model.reranker]
        elif phase.name == "warmup":
            mods = [model.views, model.text_code]
        elif phase.name == "fit":
            mods = [model.decoder, model.text_code]
        else:
            mods = [model.views, model.text_code, model.rq, model.decoder]
        params = [p for m in mods for p in m.parameters()]
        if phase.name != "rerank":
            params.append(model.code_log_scale)
        return params

    # ---------------------------------------------------------------- routing
    def _all_views(self, model, rows: np.ndarray | None = None):
        torch = self.torch
        with torch.no_grad():
            idx = torch.from_numpy(self.seen if rows is None else rows).to(self.device)
            return model.views(self.frames[idx], self.pooled[idx])  # [S, K, d]

    def _kmeans_routes(self, model) -> np.ndarray:
        """Map each video's caption groups to its views (Hungarian on group-centroid/view cosine)."""
        from scipy.optimize import linear_sum_assignment

        torch = self.torch
        with torch.no_grad():
            views = self._all_views(model).cpu().numpy()
            t = model.text_code(self.q_pooled).cpu().numpy()
        routes = np.zeros(len(self.q_video), dtype=np.int64)
        for v in np.unique(self.q_video):
            rows = np.flatnonzero(self.q_video == v)
            g = self.groups[rows]
            cents = np.stack([t[rows[g == j]].mean(0) for j in range(g.max() + 1)])
            sim = cents @ views[self.seen_pos[v]].T  # [groups, K]
            gi, vi = linear_sum_assignment(-sim)
            mapping = dict(zip(gi.tolist(), vi.tolist()))
            routes[rows] = [mapping[int(x)] for x in g]
        return routes

    # ---------------------------------------------------------------- quantiser upkeep
    def _init_level(self, model, level: int, gen) -> None:
        """k-means-initialise codebook `level` (1-based) on the residuals of the kmeans_videos' views."""
        torch = self.torch
        views = self._all_views(model, self.kmeans_videos).reshape(-1, self.cfg.code_dim)
        with torch.no_grad():
            _, residuals, words = model.rq.quantize(views, level - 1) if level > 1 else (None, [], [])
            r = views - sum(words) if words else views
            model.rq.codebooks.data[level - 1] = _kmeans_cosine(r, self.cfg.codebook_size, KMEANS_ITERS, gen)

    def _reseed_dead(self, model, level: int, gen) -> int:
        """Codes no view of the kmeans_videos uses are moved onto residuals from the most crowded codes."""
        torch = self.torch
        views = self._all_views(model, self.kmeans_videos).reshape(-1, self.cfg.code_dim)
        with torch.no_grad():
            codes, residuals, _ = model.rq.quantize(views, level)
            c, r = codes[:, level - 1], residuals[level - 1]
            counts = torch.bincount(c, minlength=self.cfg.codebook_size)
            dead = torch.nonzero(counts == 0).flatten()
            if len(dead) == 0:
                return 0
            # sample donors proportionally to crowding (members of big codes are picked more)
            weights = counts[c].to(torch.float32)
            donors = torch.multinomial(weights, len(dead), replacement=True, generator=gen)
            noise = 0.01 * torch.randn(len(dead), r.shape[-1], generator=gen)
            model.rq.codebooks.data[level - 1, dead] = r[donors] + noise
        return int(len(dead))

    # ---------------------------------------------------------------- epochs
    def run_epoch(self, model, opt, phase: Phase, phase_idx: int, epoch: int, progress=None) -> dict[str, float]:
        torch = self.torch
        from grdr_plugin.model import losses

        rng = self._seed(phase_idx, epoch)
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        tc = self.tc
        if phase.level and phase.name != "fit" and epoch == 0:
            self._init_level(model, phase.level, gen)
        if phase.name == "fit" and "fit_codes" not in self.extra:
            self._prepare_fit(model)
        routed = tc.routing == "kmeans" and phase.name not in ("rerank", "fit")
        routes = self._kmeans_routes(model) if routed else None
        model.train()
        n = len(self.train_q)
        order = rng.permutation(n)
        sums: dict[str, float] = {}
        steps = 0
        # the reranker's softmax runs over all seen videos, recomputed per step: bigger batches
        bs = tc.batch_size * (4 if phase.name == "rerank" else 1)
        for start in range(0, n, bs):
            rows = order[start : start + bs]
            parts = self._losses(model, phase, rows, routes, losses)
            loss = sum(parts.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 5.0)
            opt.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["total"] = sums.get("total", 0.0) + float(loss.detach())
            steps += 1
            if progress is not None:
                progress(len(rows))
        stats = {k: v / max(steps, 1) for k, v in sums.items()}
        if phase.level and phase.name != "fit" and tc.dead_code_reseed:
            stats["reseeded"] = float(self._reseed_dead(model, phase.level, gen))
        return stats

    def _prepare_fit(self, model) -> None:
        """Freeze IDs and routes for the fit phase (stored in the checkpoint for resume)."""
        torch = self.torch
        with torch.no_grad():
            views = self._all_views(model)
            codes, _, _ = model.rq.quantize(views)
            if self.tc.routing == "kmeans":
                route = torch.from_numpy(self._kmeans_routes(model))
            else:
                t = model.text_code(self.q_pooled)
                vpos = torch.from_numpy(self.seen_pos[self.q_video])
                route = torch.einsum("bd,bkd->bk", t, views[vpos]).argmax(-1)
        self.extra["fit_codes"] = codes.cpu()  # [S, K, L]
        self.extra["fit_route"] = route.cpu()  # [n_train_q]

    def _losses(self, model, phase: Phase, rows: np.ndarray, routes, losses) -> dict[str, Any]:
        from grdr_plugin.model.nets import MAX_LOGIT_SCALE

        torch = self.torch
        tc, cfg = self.tc, self.cfg
        dev = self.device
        q_vid = self.q_video[rows]
        qp = self.q_pooled[torch.from_numpy(rows).to(dev)]
        if phase.name == "rerank":
            tq = model.reranker.text(qp)
            idx = torch.from_numpy(self.seen).to(dev)
            fm = None
            if tc.frame_dropout > 0 and self.frames.shape[1] > 1:
                fm = torch.rand(len(idx), self.frames.shape[1], device=dev) >= tc.frame_dropout
                fm[torch.arange(len(idx)), torch.randint(0, self.frames.shape[1], (len(idx),))] = True  # keep >= 1
            vv = model.reranker.video_vec(self.frames[idx], self.pooled[idx], fm)
            target = torch.from_numpy(self.seen_pos[q_vid]).to(dev)
            return {"rerank": losses.dense_contrastive(tq, vv, target, tc.temperature)}
        t = model.text_code(qp)
        scale = model.code_log_scale.exp().clamp(1.0, MAX_LOGIT_SCALE)
        if phase.name == "fit":
            spos = torch.from_numpy(self.seen_pos[q_vid])
            route = self.extra["fit_route"][torch.from_numpy(rows)]
            target = self.extra["fit_codes"][spos, route].to(dev)  # [b, L]
            return self._gen_and_code(model, rows, t, target, scale, losses)
        uniq, inv = np.unique(q_vid, return_inverse=True)
        uidx = torch.from_numpy(uniq).to(dev)
        views = model.views(self.frames[uidx], self.pooled[uidx])  # [u, K, d]
        inv_t = torch.from_numpy(inv).to(dev)
        if routes is not None:
            route = torch.from_numpy(routes[rows]).to(dev)
        else:  # max-similarity routing (no gradient through the choice)
            route = torch.einsum("bd,bkd->bk", t.detach(), views.detach()[inv_t]).argmax(-1)
        contrastive = losses.query_view_contrastive(t, views, inv_t, route, tc.temperature)
        parts = {"contrastive": tc.w_contrastive * contrastive}
        if phase.level == 0:
            return parts
        flat = views.reshape(-1, cfg.code_dim)
        codes, residuals, words = model.rq.quantize(flat, phase.level)
        parts["commitment"] = tc.w_commitment * losses.commitment_loss(residuals, words, tc.commitment_beta)
        parts["reconstruction"] = tc.w_reconstruction * losses.reconstruction_loss(flat, words)
        target = codes.reshape(views.shape[0], cfg.views, phase.level)[inv_t, route]  # [b, l]
        parts.update(self._gen_and_code(model, rows, t, target, scale, losses))
        return parts

    def _gen_and_code(self, model, rows, t, target, scale, losses) -> dict[str, Any]:
        torch = self.torch
        tc = self.tc
        states, mask = self.text.batch(rows)
        states_t, mask_t = torch.from_numpy(states).to(self.device), torch.from_numpy(mask).to(self.device)
        lvl = target.shape[1]
        logits = model.decoder(states_t, mask_t, t, target[:, : lvl - 1], model.rq.codebooks)
        return {
            "generation": tc.w_generation * losses.generation_loss(logits, target, tc.label_smoothing),
            "code": tc.w_code * losses.code_loss(t, model.rq.codebooks, target, scale),
        }

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, model, opt, phase_idx: int, epoch: int) -> None:
        from grdr_plugin.model.artifacts import optimizer_to_tensors, save_tensors

        ck = self.out / CHECKPOINT_DIR
        ck.mkdir(parents=True, exist_ok=True)
        save_tensors(ck / "model.safetensors", model.state_dict())
        ot, ometa = optimizer_to_tensors(opt)
        save_tensors(ck / "optimizer.safetensors", ot or {"_empty": self.torch.zeros(1)})
        save_tensors(ck / "extra.safetensors", self.extra or {"_empty": self.torch.zeros(1)})
        state = {"phase_idx": phase_idx, "epoch": epoch, "history": self.history, "optimizer": ometa,
                 "model_config": self.cfg.model_dump(), "train_config": self.tc.model_dump()}
        tmp = ck / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(ck / "state.json")

    def load_checkpoint(self, model) -> tuple[int, int, dict | None]:
        """-> (phase_idx, next epoch, optimizer meta + tensors) or (0, 0, None) without one."""
        from safetensors.torch import load_file

        ck = self.out / CHECKPOINT_DIR
        if not (ck / "state.json").is_file():
            return 0, 0, None
        state = json.loads((ck / "state.json").read_text())
        if state["model_config"] != self.cfg.model_dump() or state["train_config"] != self.tc.model_dump():
            raise ValueError(f"{ck}: checkpoint was made with another configuration; "
                             "drop --resume or use another --out")
        model.load_state_dict(load_file(str(ck / "model.safetensors")))
        self.history = state["history"]
        self.extra = {k: v for k, v in load_file(str(ck / "extra.safetensors")).items() if k != "_empty"}
        ot = {k: v for k, v in load_file(str(ck / "optimizer.safetensors")).items() if k != "_empty"}
        return state["phase_idx"], state["epoch"] + 1, {"tensors": ot, "meta": state["optimizer"]}


def collision_stats(codes: np.ndarray, codebook_size: int, seen: np.ndarray | None = None) -> dict[str, Any]:
    """Videos per ID, codebook utilisation and perplexity per level, for codes [N, K, L]."""
    n, k, levels = codes.shape
    from grdr_plugin.model.ids import encode_prefix

    keys = encode_prefix(codes.reshape(n * k, levels), codebook_size)
    vids = np.repeat(np.arange(n), k)
    pairs = np.unique(np.stack([keys, vids], 1), axis=0)  # (ID, video) pairs, a video's duplicate IDs once
    _, per_id = np.unique(pairs[:, 0], return_counts=True)
    distinct_per_video = np.array([len(set(row)) for row in encode_prefix(codes, codebook_size).tolist()])
    out: dict[str, Any] = {
        "videos": int(n), "views": int(k), "ids_distinct": int(len(per_id)),
        "videos_per_id_mean": float(per_id.mean()), "videos_per_id_max": int(per_id.max()),
        "ids_shared_fraction": float((per_id > 1).mean()),
        "distinct_ids_per_video_mean": float(distinct_per_video.mean()),
        "levels": [],
    }
    for lvl in range(levels):
        cnt = np.bincount(codes[:, :, lvl].ravel(), minlength=codebook_size)
        p = cnt / cnt.sum()
        ent = -(p[p > 0] * np.log(p[p > 0])).sum()
        out["levels"].append({"level": lvl + 1, "utilisation": float((cnt > 0).mean()),
                              "perplexity": float(math.exp(ent))})
    return out


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for h in history for k in h if k not in ("phase", "epoch", "seconds", "reseeded", "step")})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for k in keys:
        for ax, want_rerank in ((axes[0], False), (axes[1], True)):
            xs = [i for i, h in enumerate(history) if k in h and (h["phase"] == "rerank") == want_rerank]
            if xs:
                ax.plot(xs, [history[i][k] for i in xs], label=k, marker=".")
    bounds = [i for i in range(1, len(history)) if history[i]["phase"] != history[i - 1]["phase"]]
    for ax in axes:
        for b in bounds:
            ax.axvline(b - 0.5, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("epoch (all phases)")
        ax.legend(fontsize=7)
    axes[0].set_title("tokenizer / retriever losses (phase boundaries dashed)")
    axes[1].set_title("dense reranker loss")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_training(ds: Dataset, out: Path, cfg: ModelConfig, tc: TrainConfig, resume: bool = False,
                 log: Callable[[str], None] = print, export_onnx: bool = True,
                 stop_after: int | None = None, start: Start | None = None) -> dict[str, Any]:
    """Train end to end and write the model folder; returns a summary (times, stats).

    stop_after: run at most this many epochs in this call, leaving a checkpoint to resume from
    (used to test resumption; also handy to train in slices on a shared machine).
    """
    import torch
    from tqdm import tqdm

    from grdr_plugin.model.artifacts import optimizer_from_tensors, save_model
    from grdr_plugin.model.nets import GRDR
    from grdr_plugin.model.text import load_encoder

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    tr = Trainer(ds, out, cfg, tc, log)
    if start is None:
        tokenizer, encoder = load_encoder(cfg.encoder)
    else:
        tokenizer, encoder, tr.kmeans_videos = start.tokenizer, start.encoder, start.kmeans_videos
    encoder.to(tr.device)
    texts_n = len(tr.train_q)
    with tqdm(total=texts_n, desc="encode captions", unit="cap", leave=False, mininterval=5) as bar:
        tr.encode_captions(encoder, tokenizer, progress=bar.update)
    t_enc = time.time() - t0
    log(f"{texts_n} train captions of {len(tr.seen)} seen videos encoded in {t_enc:.0f}s")
    model = (GRDR(cfg) if start is None else start.model).to(tr.device)
    plan = phases(cfg, tc)
    start_phase, start_epoch, opt_state = tr.load_checkpoint(model) if resume else (0, 0, None)
    if opt_state is not None:
        log(f"resuming at phase {plan[start_phase].name if start_phase < len(plan) else 'done'} epoch {start_epoch}")
    total_epochs = sum(p.epochs for p in plan)
    done = sum(p.epochs for p in plan[:start_phase]) + start_epoch
    ran = 0
    with tqdm(total=total_epochs, initial=done, desc="train", unit="epoch") as bar:
        for pi in range(start_phase, len(plan)):
            if stop_after is not None and ran >= stop_after:
                break
            phase = plan[pi]
            opt = torch.optim.AdamW(tr._params(model, phase), lr=tc.lr, weight_decay=tc.weight_decay)
            first = start_epoch if pi == start_phase else 0
            if first >= phase.epochs:
                continue
            if pi == start_phase and opt_state is not None and first > 0:
                optimizer_from_tensors(opt, opt_state["tensors"], opt_state["meta"])
            sched_total = phase.epochs
            for ep in range(first, phase.epochs):
                if stop_after is not None and ran >= stop_after:
                    break
                ran += 1
                for g in opt.param_groups:  # cosine decay within a phase
                    g["lr"] = tc.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * ep / sched_total)))
                te = time.time()
                stats = tr.run_epoch(model, opt, phase, pi, ep)
                stats.update(phase=phase.name, epoch=ep, seconds=round(time.time() - te, 2))
                tr.history.append(stats)
                tr.save_checkpoint(model, opt, pi, ep)
                shown = " ".join(f"{k}={v:.3f}" for k, v in stats.items() if isinstance(v, float) and k != "seconds")
                bar.set_postfix_str(f"{phase.name} {shown}")
                bar.update(1)
    if stop_after is not None and ran >= stop_after and done + ran < total_epochs:
        return {"stopped": True, "epochs_done": done + ran}
    model.eval()
    cfg_saved = save_model(out, model, encoder, tokenizer)
    with torch.no_grad():
        codes = model.video_codes(tr.frames, tr.pooled).cpu().numpy()
    stats = {"all": collision_stats(codes, cfg.codebook_size),
             "seen": collision_stats(codes[ds.video_split], cfg.codebook_size),
             "unseen": collision_stats(codes[~ds.video_split], cfg.codebook_size) if (~ds.video_split).any() else None}
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(tr.history, indent=1) + "\n")
    (out / "train_config.json").write_text(json.dumps(tc.model_dump(), indent=2) + "\n")
    plot_curves(tr.history, out / "training_curves.png")
    t_train = time.time() - t0
    if export_onnx:
        from grdr_plugin.model.export import export_onnx as _export

        _export(out)
    summary = {"seconds_total": round(time.time() - t0, 1), "seconds_train": round(t_train, 1),
               "seconds_encode": round(t_enc, 1), "fingerprint": cfg_saved.fingerprint, "stats": stats["all"],
               **(start.record if start is not None else {})}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
