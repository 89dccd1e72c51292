"""Torch modules of the GRDR model.

* `ViewEncoder`     video (frames + pooled) -> K unit-norm views in the code space.
* `ResidualQuantizer` L levels of C codes; cosine assignment, raw-codeword residuals.
* `TextHead`        pooled text embedding -> unit-norm vector in the code space.
* `CodeDecoder`     small autoregressive decoder whose input embeddings and output classifier
                    ARE the codebooks (cosine logits, learned clamped scale).
* `Reranker`        dual encoder: text pooled -> D, video -> D (both unit-norm).

Attention is written out by hand (no nn.MultiheadAttention fast paths) so that ONNX export of
one decoder step with a dynamic prefix length traces cleanly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from grdr_plugin.model.config import ModelConfig

MAX_LOGIT_SCALE = 100.0


class MLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.1):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(states.dtype).unsqueeze(-1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)


class ViewEncoder(nn.Module):
    """K learned view queries attend over [pooled; frames]; each view has its own output map."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k = cfg.code_dim, cfg.views
        self.inp = MLP(cfg.feature_dim, cfg.hidden_dim, d)
        self.key = nn.Linear(d, d)
        self.queries = nn.Parameter(torch.randn(k, d) * 0.5)
        # per-view residual map: views start close to the attention read-out and specialise
        self.view_w = nn.Parameter(torch.zeros(k, d, d))
        self.view_b = nn.Parameter(torch.randn(k, d) * 0.02)

    def forward(self, frames: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pooled.unsqueeze(1), frames], dim=1)  # [N, F+1, Dv]
        h = self.inp(x)  # [N, F+1, d]
        att = torch.einsum("kd,nfd->nkf", self.queries, self.key(h)) / math.sqrt(h.shape[-1])
        v = torch.einsum("nkf,nfd->nkd", att.softmax(-1), h)
        v = v + torch.einsum("nkd,kde->nke", v, self.view_w) + self.view_b
        return F.normalize(v, dim=-1)


class ResidualQuantizer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.levels, self.size = cfg.levels, cfg.codebook_size
        self.codebooks = nn.Parameter(torch.randn(cfg.levels, cfg.codebook_size, cfg.code_dim) * 0.1)

    def quantize(self, x: torch.Tensor, levels: int | None = None):
        """x [..., d] -> codes [..., l], per-level residuals (inputs), per-level codewords."""
        levels = self.levels if levels is None else levels
        r, codes, residuals, words = x, [], [], []
        for lvl in range(levels):
            book = self.codebooks[lvl]
            c = (F.normalize(r, dim=-1) @ F.normalize(book, dim=-1).T).argmax(-1)
            e = book[c]
            codes.append(c)
            residuals.append(r)
            words.append(e)
            r = r - e
        return torch.stack(codes, -1), residuals, words


class TextHead(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.mlp = MLP(d_in, d_hidden, d_out)
        self.skip = nn.Linear(d_in, d_out)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(pooled) + self.skip(pooled), dim=-1)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, mem, bias: torch.Tensor) -> torch.Tensor:
        """mem: a tensor [B, Tk, d] or precomputed (k, v) split by heads; bias: additive,
        broadcastable to [B, heads, Tq, Tk]."""
        if isinstance(mem, tuple):
            k, v = mem
        else:
            k, v = self.keys_values(mem)
        return self.attend(x, k, v, bias)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _split_heads(self.k(x), self.heads), _split_heads(self.v(x), self.heads)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias) -> torch.Tensor:
        q = _split_heads(self.q(x), self.heads)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + bias
        out = att.softmax(-1) @ v
        b, h, t, dh = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, h * dh))

    def attend_one(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias) -> torch.Tensor:
        """attend() for ONE query position x [B,1,d] (inference); same math, cheaper kernels.

        k/v [B or 1, h, T, dh]; bias broadcastable to [B, h, 1, T].  As q @ k^T a batch of 1×T
        products is B·h tiny GEMMs in onnxruntime.  One memory that every row shares (k batch 1:
        one query's beams) becomes h GEMMs [B, dh] x [dh, T]; per-row keys (the self-attention
        cache) become an elementwise product and a sum.  In an ONNX trace the branch is fixed
        by the traced shapes (export.py traces the shared-memory case for cross-attention).
        """
        q = _split_heads(self.q(x), self.heads)  # [B, h, 1, dh]
        b, h, _, dh = q.shape
        if k.shape[0] == 1:
            qh = q[:, :, 0].transpose(0, 1)  # [h, B, dh]
            bias_h = bias[0].transpose(0, 1) if torch.is_tensor(bias) else bias  # [1, 1, T] -> broadcast [h, B, T]
            att = qh @ k[0].transpose(-1, -2) / math.sqrt(dh) + bias_h  # [h, B, T]
            out = (att.softmax(-1) @ v[0]).transpose(0, 1)  # [B, h, dh]
        else:
            att = (q * k).sum(-1) / math.sqrt(dh) + (bias[:, :, 0] if torch.is_tensor(bias) else bias)  # [B, h, T]
            out = (att.softmax(-1).unsqueeze(-1) * v).sum(-2)  # [B, h, dh]
        return self.o(out.reshape(b, 1, h * dh))


class DecoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_att, self.cross_att = Attention(d, heads), Attention(d, heads)
        self.mlp = MLP(d, 2 * d, d, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem, self_bias, mem_bias):
        h = self.ln1(x)
        x = x + self.drop(self.self_att(h, h, self_bias))
        return self._cross_and_mlp(x, mem, mem_bias)

    def forward_cached(self, x_new, past_k, past_v, mem, mem_bias):
        """One new position `x_new` [B,1,w] after cached self-attention keys/values [B,h,n,dh]
        of the earlier positions (inference only) -> (output [B,1,w], keys, values [B,h,n+1,dh])."""
        h = self.ln1(x_new)
        k_new, v_new = self.self_att.keys_values(h)
        k, v = torch.cat([past_k, k_new], dim=2), torch.cat([past_v, v_new], dim=2)
        x = x_new + self.self_att.attend_one(h, k, v, 0.0)  # the last position sees every earlier one
        x = x + self.cross_att.attend_one(self.ln2(x), *mem, mem_bias)
        return x + self.mlp(self.ln3(x)), k, v

    def _cross_and_mlp(self, x, mem, mem_bias):
        x = x + self.drop(self.cross_att(self.ln2(x), mem, mem_bias))
        return x + self.drop(self.mlp(self.ln3(x)))


class CodeDecoder(nn.Module):
    """Emits the L codes of an ID autoregressively; codebooks are its embeddings and classifier.

    Position j (0-based) reads BOS and the codewords of codes 0..j-1 (through a linear adapter
    from the code space to the decoder width) and scores the codes of level j by cosine
    against that level's codebook.  Its output direction starts from the query's analytic
    residual (text vector minus the codewords emitted so far) and the transformer adds a
    learned correction: with the prior alone, decoding a video's own view vector reproduces
    the tokenizer's residual assignment exactly, so IDs of videos never seen in training are
    reachable from the start (this is what keeps unseen videos' recall close to seen ones').
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, w = cfg.code_dim, cfg.decoder_dim
        self.levels, self.heads = cfg.levels, cfg.decoder_heads
        self.mem_proj = nn.Linear(cfg.text_dim, w)
        self.query_proj = nn.Linear(d, w)
        self.word_proj = nn.Linear(d, w)
        self.bos = nn.Parameter(torch.randn(w) * 0.02)
        self.level_emb = nn.Parameter(torch.randn(cfg.levels, w) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(w, cfg.decoder_heads) for _ in range(cfg.decoder_layers))
        self.ln = nn.LayerNorm(w)
        self.out = nn.Linear(w, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.prior_gain = nn.Parameter(torch.tensor(1.0))
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(1.0, MAX_LOGIT_SCALE)

    def memory(self, states, mask, text_vec):
        """Per-query cross-attention keys/values for every layer (computed once per query)."""
        mem = torch.cat([self.query_proj(text_vec).unsqueeze(1), self.mem_proj(states)], dim=1)
        mem_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        bias = ((1 - mem_mask).to(mem.dtype) * -1e4)[:, None, None, :]
        kv = [(_split_heads(b.cross_att.k(mem), self.heads), _split_heads(b.cross_att.v(mem), self.heads)) for b in self.blocks]
        return kv, bias

    def decode(self, kv, mem_bias, text_vec, prefix, codebooks) -> torch.Tensor:
        """Logits [B, n+1, C] given precomputed memory: rows aligned with prefix, or one row that
        every prefix shares (one query's beams, with no per-beam copy of the memory)."""
        b, n = prefix.shape[0], prefix.shape[1]
        text_vec = text_vec.expand(b, -1)
        words, x = self._inputs(prefix, codebooks)
        causal = torch.triu(torch.ones(n + 1, n + 1, device=prefix.device), diagonal=1) * -1e4
        for blk, (k, v) in zip(self.blocks, kv):
            x = blk(x, (k, v), causal, mem_bias)
        # analytic residual prior: r_j = t - sum_{i<j} e_i
        cum = torch.cat([torch.zeros_like(text_vec).unsqueeze(1), torch.cumsum(words, dim=1)], dim=1)  # [B, n+1, d]
        return self._logits(text_vec.unsqueeze(1) - cum, x, codebooks[: n + 1])

    def decode_cached(self, kv, mem_bias, text_vec, prefix, past_k, past_v, codebooks):
        """The last position only, reusing the self-attention keys/values of the earlier ones.

        past_k/past_v [B, layers, heads, n, dh] (n = prefix length; n = 0 is empty) ->
        (logits [B, C] of level n+1, keys/values [B, layers, heads, n+1, dh]).  Equals
        decode(...)[:, -1] (inference: dropout off); a beam step then costs one position, not n+1.
        """
        b, n = prefix.shape[0], prefix.shape[1]
        text_vec = text_vec.expand(b, -1)
        words = self._words(prefix, codebooks)
        # input of position n only: BOS when n = 0, else the last codeword (no Python branch: the
        # ONNX trace must serve every prefix length; words[:, -1:] is empty when n = 0)
        x = torch.cat([self.bos.expand(b, 1, -1), self._embed(words[:, -1:])], dim=1)[:, -1:] + self.level_emb[n: n + 1]
        keys, values = [], []
        for i, (blk, (k, v)) in enumerate(zip(self.blocks, kv)):
            x, k_all, v_all = blk.forward_cached(x, past_k[:, i], past_v[:, i], (k, v), mem_bias)
            keys.append(k_all)
            values.append(v_all)
        residual = text_vec - words.sum(1)
        logits = self._logits(residual.unsqueeze(1), x, codebooks[n: n + 1])[:, 0]
        return logits, torch.stack(keys, 1), torch.stack(values, 1)

    def _words(self, prefix, codebooks):
        """Codewords of the prefix [B, n, d]."""
        levels, size, d = codebooks.shape
        lvl_idx = torch.arange(prefix.shape[1], device=prefix.device)
        return codebooks.reshape(levels * size, d)[lvl_idx.unsqueeze(0) * size + prefix]

    def _embed(self, words):
        """Decoder inputs of codewords [B, m, d] -> [B, m, w] (level embedding not added)."""
        return self.word_proj(F.normalize(words, dim=-1))

    def _inputs(self, prefix, codebooks):
        """Codewords of the prefix [B, n, d] and the decoder inputs of positions 0..n [B, n+1, w]."""
        b, n = prefix.shape[0], prefix.shape[1]
        words = self._words(prefix, codebooks)
        inp = torch.cat([self.bos.expand(b, 1, -1), self._embed(words)], dim=1) + self.level_emb[: n + 1]
        return words, inp

    def _logits(self, residual, x, books):
        """Cosine logits of the positions' directions (residual prior + learned correction) vs `books`."""
        z = F.normalize(self.prior_gain * F.normalize(residual, dim=-1) + self.out(self.ln(x)), dim=-1)
        return self.scale() * torch.einsum("bjd,jcd->bjc", z, F.normalize(books, dim=-1))

    def forward(self, states, mask, text_vec, prefix, codebooks) -> torch.Tensor:
        """states [B,T,H], mask [B,T] int, text_vec [B,d] unit, prefix [B,n] int64 (n < L),
        codebooks [L,C,d] -> logits [B, n+1, C] (position j scores level j)."""
        kv, bias = self.memory(states, mask, text_vec)
        return self.decode(kv, bias, text_vec, prefix, codebooks)


class Reranker(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.text = TextHead(cfg.text_dim, cfg.hidden_dim, cfg.rerank_dim)
        self.video = MLP(cfg.feature_dim, cfg.hidden_dim, cfg.rerank_dim)

    def video_vec(self, frames: torch.Tensor, pooled: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        # pooled plus the mean of per-frame maps: each frame carries its own caption group.
        # frame_mask (training only) drops frames as augmentation; the pooled input is then
        # the normalised mean of the kept frames, as a shorter video would have.
        if frame_mask is None:
            return F.normalize(self.video(pooled) + self.video(frames).mean(1), dim=-1)
        m = frame_mask.to(frames.dtype).unsqueeze(-1)
        pooled = F.normalize((frames * m).sum(1), dim=-1)
        return F.normalize(self.video(pooled) + (self.video(frames) * m).sum(1) / m.sum(1), dim=-1)


class GRDR(nn.Module):
    """All trainable parts.  The frozen text encoder lives outside (see text.py / export.py)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.views = ViewEncoder(cfg)
        self.rq = ResidualQuantizer(cfg)
        self.text_code = TextHead(cfg.text_dim, cfg.hidden_dim, cfg.code_dim)
        self.decoder = CodeDecoder(cfg)
        self.reranker = Reranker(cfg)
        self.code_log_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    @torch.no_grad()
    def video_codes(self, frames: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        codes, _, _ = self.rq.quantize(self.views(frames, pooled))
        return codes  # [N, K, L]

    def step_logprobs(self, states, mask, pooled, prefix) -> torch.Tensor:
        """Log-probabilities of the next level's codes given `prefix` [B, t] -> [B, C]."""
        logits = self.decoder(states, mask, self.text_code(pooled), prefix, self.rq.codebooks)
        return logits[:, -1].log_softmax(-1)
