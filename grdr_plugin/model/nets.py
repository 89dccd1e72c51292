"""Torch modules of the GRDR model.

* `ViewEncoder`     video (frames + pooled) -> K unit-norm views in the code space.
* `ResidualQuantizer` L levels of C codes; cosine assignment, raw-codeword residuals.
* `TextHead`        pooled text embedding -> unit-norm vector in the code space.
* `CodeDecoder`     small autoregressive decoder whose input embeddings and output classifier
                    ARE the codebooks (cosine logits, learned clamped scale).
* `Reranker`        dual encoder: text pooled -> D, video -> D (both unit-norm).

Attention is written out by hand (no nn.MultiheadAttention fast paths): the serving graphs
(grdr_plugin.model.export) trace its pieces separately (the folded cross-attention memory, one new
position against cached self-attention keys/values) into plain ONNX ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from grdr_plugin.model.config import ModelConfig

MAX_LOGIT_SCALE = 100.0  # cap of the learned cosine-logit scale (as CLIP's): beyond it the softmax saturates
# Additive attention mask: exp(-1e4) underflows to 0 in float32 yet stays finite, so a row
# masked everywhere gives no NaN.
MASKED = -1e4


class MLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.1):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(states.dtype).unsqueeze(-1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)  # an all-padding row gives 0, not NaN


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

    def fold(self, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
        """Fold the q and o projections into a memory k/v [B,h,T,dh] with bias [B,1,1,T], once per
        query: q_h·k_t = x·(W_q,h^T k_t) + b_q,h·k_t and o = sum_h att_h (v_h W_o,h^T).  Returns
        keys [B,d,h·T], key_bias [B,h·T], values [B,h·T,d] for attend_folded."""
        b, heads, t, dh = k.shape
        keys = torch.einsum("hdi,bhtd->biht", self.q.weight.reshape(heads, dh, -1), k).reshape(b, -1, heads * t)
        key_bias = torch.einsum("hd,bhtd->bht", self.q.bias.reshape(heads, dh), k) + bias[:, 0] * math.sqrt(dh)
        values = torch.einsum("bhtd,ohd->bhto", v, self.o.weight.reshape(-1, heads, dh)).reshape(b, heads * t, -1)
        return keys / math.sqrt(dh), key_bias.reshape(b, heads * t) / math.sqrt(dh), values

    def attend_folded(self, x: torch.Tensor, keys: torch.Tensor, key_bias: torch.Tensor,
                      values: torch.Tensor) -> torch.Tensor:
        """attend() for ONE query position x [B,1,d] against one folded memory (batch 1, see fold)
        that every row shares (one query's beams): two GEMMs of width h·T (a few dozen) per row
        instead of the q and o projections (width d) and h small ones."""
        att = (x[:, 0] @ keys[0] + key_bias).reshape(x.shape[0], self.heads, -1).softmax(-1)  # [B, h, T]
        return (att.reshape(x.shape[0], -1) @ values[0] + self.o.bias).unsqueeze(1)

    def qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The q, k and v projections as one: weight [3d, d], bias [3d]."""
        weights, biases = zip(*((p.weight, p.bias) for p in (self.q, self.k, self.v)))
        return torch.cat(weights), torch.cat(biases)

    def project_one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of one position x [B,1,d], each [B,h,dh], as one GEMM (weights concatenated)."""
        qkv = F.linear(x[:, 0], *self.qkv_weights())
        return tuple(part.reshape(x.shape[0], self.heads, -1) for part in qkv.chunk(3, dim=-1))

    def attend_cached(self, q: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
        """attend() for ONE query position, its query q [B,h,dh] given, over per-row keys/values of
        each position ([B,h,dh] each, the new one last) -> [B,1,d].  Written per position: a decoder
        step has at most L of them, and an unrolled product + last-axis sum is far cheaper in
        onnxruntime than B·h tiny GEMMs or a reduction over the position axis (an ONNX trace fixes
        the count: one graph per level)."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        att = torch.stack([(q * k).sum(-1) for k in keys], -1).mul(scale).softmax(-1)  # [B, h, n]
        out = att[..., :1] * values[0]
        for j in range(1, len(values)):
            out = out + att[..., j: j + 1] * values[j]
        return self.o(out.reshape(q.shape[0], 1, -1))


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

    def forward_cached(self, x_new, past_k, past_v, folded):
        """One new position `x_new` [B,1,w] after cached self-attention keys/values [B,h,n,dh] of
        the earlier positions and one folded memory every row shares (inference only) ->
        (output [B,1,w], this position's keys and values [B,h,1,dh])."""
        q, k_new, v_new = self.self_att.project_one(self.ln1(x_new))
        n = past_k.shape[2]
        keys = [past_k[:, :, j] for j in range(n)] + [k_new]
        values = [past_v[:, :, j] for j in range(n)] + [v_new]
        x = x_new + self.self_att.attend_cached(q, keys, values)  # the last position sees every earlier one
        return self.cross_and_mlp_one(x, folded), k_new.unsqueeze(2), v_new.unsqueeze(2)

    def cross_and_mlp_one(self, x, folded):
        """Cross-attention (one folded memory every row shares) and MLP of one position x [B,1,w]."""
        x = x + self.cross_att.attend_folded(self.ln2(x), *folded)
        return x + self.mlp(self.ln3(x))

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
        bias = ((1 - mem_mask).to(mem.dtype) * MASKED)[:, None, None, :]
        kv = [(_split_heads(b.cross_att.k(mem), self.heads), _split_heads(b.cross_att.v(mem), self.heads))
              for b in self.blocks]
        return kv, bias

    def fold_memory(self, kv, bias):
        """memory() with each block's cross-attention projections folded in (Attention.fold)."""
        return [blk.cross_att.fold(k, v, bias) for blk, (k, v) in zip(self.blocks, kv)]

    def decode(self, kv, mem_bias, text_vec, prefix, codebooks) -> torch.Tensor:
        """Logits [B, n+1, C] given precomputed memory: rows aligned with prefix, or one row that
        every prefix shares (one query's beams, with no per-beam copy of the memory)."""
        b, n = prefix.shape[0], prefix.shape[1]
        text_vec = text_vec.expand(b, -1)
        words, x = self._inputs(prefix, codebooks)
        causal = torch.triu(torch.ones(n + 1, n + 1, device=prefix.device), diagonal=1) * MASKED
        for blk, (k, v) in zip(self.blocks, kv):
            x = blk(x, (k, v), causal, mem_bias)
        # analytic residual prior: r_j = t - sum_{i<j} e_i
        cum = torch.cat([torch.zeros_like(text_vec).unsqueeze(1), torch.cumsum(words, dim=1)], dim=1)  # [B, n+1, d]
        return self._logits(text_vec.unsqueeze(1) - cum, x, codebooks[: n + 1])

    def level_tables(self, n: int, codebooks, chunk: int = 4096) -> dict[str, torch.Tensor]:
        """What decode_level needs per prefix of n codes that depends on the codes alone, for all
        C**n prefixes (row = the prefix's base-C encoding, first code most significant, as
        `grdr_plugin.model.ids.encode_prefix`), so a serving graph gathers it instead of computing it:

        state     [P, w]  the first block's state after its self-attention at position n (the text
                          enters at cross-attention)
        sum_books [P, C]  S·b_c, S = the prefix's summed codewords, b_c = level n+1's unit codewords
        sum_out   [P, w]  W_out^T S
        sum_sq    [P]     |S|^2
        sum_bias  [P]     S·b_out
        and the head's constants: text_keys [d, n·C + C + w + 1] (what the query vector t is dotted
        with: the codewords of levels 1..n, the b_c, W_out, b_out), gram = W_out^T W_out,
        out_bias = W_out^T b_out, bias_sq = |b_out|^2, out_books = W_out^T b_c [w, C], bias_books = b_out·b_c [C].
        """
        size = codebooks.shape[1]
        if n:
            prefixes = torch.cartesian_prod(*[torch.arange(size)] * n).reshape(-1, n)
        else:
            prefixes = torch.zeros(1, 0, dtype=torch.int64)
        blk = self.blocks[0]
        causal = torch.triu(torch.ones(n + 1, n + 1), diagonal=1) * MASKED
        books = F.normalize(codebooks[n], dim=-1)
        parts = []
        for part in prefixes.split(chunk):  # `chunk` prefixes at a time bound the activations' memory
            words, x = self._inputs(part, codebooks)
            h = blk.ln1(x)
            summed = words.sum(1)
            parts.append({"state": (x + blk.self_att(h, h, causal))[:, -1], "sum_books": summed @ books.T,
                          "sum_out": summed @ self.out.weight, "sum_sq": (summed * summed).sum(-1),
                          "sum_bias": summed @ self.out.bias})
        weight, bias = self.out.weight, self.out.bias  # [d, w], [d]
        text_keys = torch.cat([codebooks[:n].reshape(n * size, books.shape[1]), books, weight.T, bias[None]]).T
        return {**{key: torch.cat([p[key] for p in parts]) for key in parts[0]},
                "text_keys": text_keys, "gram": weight.T @ weight, "out_bias": weight.T @ bias, "bias_sq": bias @ bias,
                "out_books": weight.T @ books.T, "bias_books": books @ bias}

    def decode_level(self, folded, text_vec, prefix, past_k, past_v, codebooks, tables=None):
        """The last position only, given one folded memory every row shares (one query's beams).

        prefix [B, n]; past_k/past_v [B, cached layers, heads, n, dh]: the self-attention keys and
        values of positions 0..n-1 of every block but the first when `tables` (= level_tables(n))
        are given, of every block otherwise -> (log-probabilities [B, C] of level n+1, this
        position's keys/values [B, cached layers, heads, 1, dh]).  Equals
        decode(...)[:, -1].log_softmax(-1) (inference: dropout off); a step costs one position.
        """
        b, n = prefix.shape[0], prefix.shape[1]
        blocks = list(self.blocks)
        if tables is not None:
            index = prefix.new_zeros(b)
            for j in range(n):  # base-C encoding, as the tables' rows
                index = index * codebooks.shape[1] + prefix[:, j]
            x = blocks.pop(0).cross_and_mlp_one(tables["state"][index].unsqueeze(1), folded[0])
            folded = folded[1:]
        elif n:
            x = self._embed(self._words(prefix[:, -1:], codebooks[n - 1: n])) + self.level_emb[n]
        else:
            x = self.bos.expand(b, 1, -1) + self.level_emb[0]
        keys, values = [], []
        for i, (blk, mem) in enumerate(zip(blocks, folded)):
            x, k, v = blk.forward_cached(x, past_k[:, i], past_v[:, i], mem)
            keys.append(k)
            values.append(v)
        u = self.ln(x[:, 0])
        if tables is not None:
            logits = self._folded_logits(u, text_vec, prefix, index, codebooks, tables)
        else:
            residual = F.normalize(text_vec - self._words(prefix, codebooks).sum(1), dim=-1)
            z = F.normalize(self.prior_gain * residual + self.out(u), dim=-1)
            logits = self.scale() * (z @ F.normalize(codebooks[n], dim=-1).T)
        if not keys:  # a one-block decoder with tables caches nothing
            none = text_vec.new_zeros(b, 0, self.heads, 1, x.shape[-1] // self.heads)
            return logits.log_softmax(-1), none, none
        return logits.log_softmax(-1), torch.stack(keys, 1), torch.stack(values, 1)

    def _folded_logits(self, u, text_vec, prefix, index, codebooks, tables):
        """_logits() of level n+1 without the d-wide vectors: with r = t - S (the residual prior),
        y = W_out u + b_out and z = (g r/|r| + y) / |g r/|r| + y|,
          z·b_c = (g (t·b_c - S·b_c)/|r| + u·(W_out^T b_c) + b_out·b_c) / |g r/|r| + y|
          |r|^2 = |t|^2 - 2 t·S + |S|^2,   |y|^2 = u^T (W_out^T W_out) u + 2 u·(W_out^T b_out) + |b_out|^2
          |g r/|r| + y|^2 = g^2 + 2 g (u·(W_out^T t - W_out^T S) + t·b_out - S·b_out)/|r| + |y|^2
        where every S term is a table row and t·S sums one entry per code; per row that is two
        GEMMs of width C and w instead of d-wide ones (d = code_dim > w here)."""
        tab, n, size = tables, prefix.shape[1], codebooks.shape[1]
        t = text_vec[:1]  # [1, d]
        # one GEMM for every dot product with t (ONNX Runtime is slow on matrix-vector products)
        t_keys = t @ tab["text_keys"]
        t_books, t_out, t_bias = t_keys[:, n * size:(n + 1) * size], t_keys[:, (n + 1) * size:-1], t_keys[0, -1]
        t_dot_s = torch.zeros_like(u[:, 0])
        for j in range(n):
            t_dot_s = t_dot_s + t_keys[0, j * size + prefix[:, j]]
        # 1e-24 = F.normalize's eps (1e-12) squared: a zero vector's norm stays finite, as in _logits
        inv_r = ((t * t).sum() - 2 * t_dot_s + tab["sum_sq"][index]).clamp_min(1e-24).rsqrt()
        y_sq = ((u @ tab["gram"] + 2 * tab["out_bias"]) * u).sum(-1) + tab["bias_sq"]
        r_dot_y = ((u * (t_out - tab["sum_out"][index])).sum(-1) + t_bias - tab["sum_bias"][index]) * inv_r
        g = self.prior_gain
        norm = (g * g + 2 * g * r_dot_y + y_sq).clamp_min(1e-24).rsqrt()
        dots = g * (t_books - tab["sum_books"][index]) * inv_r[:, None] + u @ tab["out_books"] + tab["bias_books"]
        return self.scale() * dots * norm[:, None]

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

    def video_vec(self, frames: torch.Tensor, pooled: torch.Tensor,
                  frame_mask: torch.Tensor | None = None) -> torch.Tensor:
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
