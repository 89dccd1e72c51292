"""decoder_search.onnx's module: the whole trie-constrained beam search of ONE query in one graph.

The serving path's decoder wherever the per-prefix tables fit (`export.tables_fit`).  The level
graphs (`CodeDecoder.decode_level`, the fallback) run one step per onnxruntime call with numpy
searching in between; this module chains every level and searches in the graph too, so a query
costs one call.  The math is decode_level's with per-prefix tables (the parity tests hold it to
`CodeDecoder.decode`), restated for onnxruntime: a step of a few dozen beams costs about as much in
per-node overhead as in arithmetic, so each piece is written in the form that measured fastest
there with the fewest nodes:

* one table row per beam and level: the first block's state after its self-attention (it sees
  codes only) and the output head's prefix terms (`CodeDecoder.level_tables`), one Gather;
* cross-attention as two GEMMs against the folded memory (`Attention.fold`);
* self-attention of the cached blocks over [beams, positions, w] keys/values, a head's lanes
  summed by one GEMM with a constant 0/1 matrix (no per-position unrolling, no reshapes);
* the head's query terms (t against every codebook, W_out, b_out) once per query, the prefix's
  t·S carried along the beams;
* the search: level n's validity mask (`grdr_plugin.decoding.validity_masks`, an input, so the
  graph follows the trie) gathered by each beam's encoded prefix, candidates = beam score + the
  valid codes' log-probabilities, TopK of min(beam, valid candidates): every beam returned is a
  full valid ID, best first, and none is padding.
"""
from __future__ import annotations

import torch
from torch import nn

from grdr_plugin.decoding import LOGP_CLIP
from grdr_plugin.model.nets import GRDR


class SearchGraph(nn.Module):
    def __init__(self, model: GRDR, tables: list[dict[str, torch.Tensor]]):
        """tables[n]: `CodeDecoder.level_tables(n)` for every level."""
        super().__init__()
        decoder, cfg = model.decoder, model.cfg
        self.decoder, self.size, self.width = decoder, cfg.codebook_size, cfg.decoder_dim
        heads = decoder.heads
        with torch.no_grad():
            g, scale = decoder.prior_gain.detach(), decoder.scale().detach()
            # the head's constants (see _log_probs) are folded into its tables and query terms
            self.rows = [torch.cat([t["state"], g * scale * t["sum_books"], 2 * g * t["sum_out"], t["sum_sq"][:, None],
                                    2 * g * t["sum_bias"][:, None]], 1) for t in tables]
            self.split = [self.width, self.size, self.width, 1, 1]
            books = model.rq.codebooks
            levels = books.shape[0]
            unit, out = nn.functional.normalize(books, dim=-1), decoder.out
            flat_unit, flat_books = unit.reshape(levels * self.size, -1), books.reshape(levels * self.size, -1)
            self.text_keys = torch.cat([g * scale * flat_unit, -2 * flat_books, 2 * g * out.weight.T,
                                        2 * g * out.bias[None]]).T
            self.head = [torch.cat([t["gram"], scale * t["out_books"]], 1) for t in tables]  # u @ this: one GEMM
            self.head_bias = [torch.cat([2 * t["out_bias"], scale * t["bias_books"]]) for t in tables]
            self.norm_bias = g * g + tables[0]["bias_sq"]
            lanes = (torch.arange(self.width) // (self.width // heads) == torch.arange(heads)[:, None]).float()
            self.lanes, self.lanes_scaled = lanes, lanes.T * (self.width // heads) ** -0.5  # [h, w], [w, h]
            self.qkv = [b.self_att.qkv_weights() for b in decoder.blocks]

    def _cross_and_mlp(self, i: int, x: torch.Tensor, keys, key_bias, values, memory_length) -> torch.Tensor:
        """Block i's cross-attention over one folded memory (keys [w, h*T], values [h*T, w]) and MLP; x [b, w]."""
        blk = self.decoder.blocks[i]
        att = torch.addmm(key_bias, blk.ln2(x), keys).reshape(-1, self.lanes.shape[0], memory_length).softmax(-1)
        x = x + torch.addmm(blk.cross_att.o.bias, att.flatten(1), values)
        return x + blk.mlp(blk.ln3(x))

    def _self_attention(self, i: int, x: torch.Tensor, past_k, past_v):
        """Block i's self-attention of the new position x [b, w] over cached positions past_k/past_v
        [b, n, w] (None at n = 0) -> (x after it, keys and values [b, n+1, w])."""
        blk = self.decoder.blocks[i]
        weight, bias = self.qkv[i]
        q, k, v = nn.functional.linear(blk.ln1(x), weight, bias).split(self.width, dim=-1)
        k, v = k.unsqueeze(1), v.unsqueeze(1)
        if past_k is None:  # the only position attends to itself alone
            out = v[:, 0]
        else:
            k, v = torch.cat([past_k, k], 1), torch.cat([past_v, v], 1)
            att = torch.matmul(q.unsqueeze(1) * k, self.lanes_scaled).softmax(1)  # [b, n+1, h]
            out = (torch.matmul(att, self.lanes) * v).sum(1)
        return x + blk.self_att.o(out), k, v

    def _log_probs(self, n: int, u, prefix_terms, t_terms, t_sq, m2ts):
        """`CodeDecoder._folded_logits` of level n + 1, log-softmaxed; its algebra with the constants
        folded in (g = prior gain, s = logit scale; primes mark the folded tables and query terms):
        u @ [gram | s·W_out^T b_c] + [2 W_out^T b_out | s·b_out·b_c] gives y's terms and the codes' dots
        in one GEMM, m2ts = -2 t·S is carried along the beams, and
          1/|r| = (|t|^2 + m2ts + |S|^2)^-1/2
          norm  = (u·(u gram + 2 W_out^T b_out + (t_out' - S_out')/|r|) + (t_b' - S_b')/|r| + g^2 + |b_out|^2)^-1/2
          logits = ((t_books' - S_books')/|r| + u_books') · norm
        (1e-24 = F.normalize's eps squared, as in `CodeDecoder._folded_logits`)."""
        sum_books, sum_out, sum_sq, sum_bias = prefix_terms
        t_books, t_out, t_bias = t_terms
        ug, u_books = torch.addmm(self.head_bias[n], u, self.head[n]).split([self.width, self.size], -1)
        inv_r = (t_sq + m2ts + sum_sq).clamp_min(1e-24).pow(-0.5)
        norm = ((u * (ug + (t_out - sum_out) * inv_r)).sum(-1, keepdim=True) + (t_bias - sum_bias) * inv_r
                + self.norm_bias).clamp_min(1e-24).pow(-0.5)
        return (((t_books - sum_books) * inv_r + u_books) * norm).log_softmax(-1)

    def forward(self, fold_k, fold_bias, fold_v, text_vec, beam, *valid):
        """fold_k [1, layers, w, h*T], fold_bias [1, layers, h*T], fold_v [1, layers, h*T, w],
        text_vec [1, d] (one query), beam int64 [], valid{n} bool [C**n, C]
        -> codes int64 [k, L], scores float32 [k] (summed log-probabilities, best first)."""
        decoder, size, levels = self.decoder, self.size, len(self.rows)
        layers = fold_k.shape[1]
        memory_length = fold_k.shape[-1] // self.lanes.shape[0]
        memory = [(fold_k[0, i], fold_bias[0, i], fold_v[0, i], memory_length) for i in range(layers)]
        t_keys = torch.matmul(text_vec, self.text_keys)  # [1, 2·L·C + w + 1]: the head's query terms
        t_sq = (text_vec * text_vec).sum(-1, keepdim=True)
        t_out, t_bias = t_keys[:, 2 * levels * size: -1], t_keys[:, -1:]
        scores = text_vec.new_zeros(1)
        enc = torch.zeros(1, dtype=torch.int64)  # each beam's prefix, base-C encoded
        m2ts = text_vec.new_zeros(1, 1)  # -2 t·S, S = the beam's summed codewords
        cache: list = [(None, None)] * layers
        for n in range(levels):
            state, *prefix_terms = self.rows[n][enc].split(self.split, -1)
            x = self._cross_and_mlp(0, state, *memory[0])
            for i in range(1, layers):
                x, *cache[i] = self._self_attention(i, x, *cache[i])
                x = self._cross_and_mlp(i, x, *memory[i])
            t_terms = (t_keys[:, n * size:(n + 1) * size], t_out, t_bias)
            logp = self._log_probs(n, decoder.ln(x), prefix_terms, t_terms, t_sq, m2ts)  # [b, C]
            # a valid code stays selectable whatever the model says of it (-inf, NaN: at the bottom),
            # clipped as constrained_beam_search clips it
            logp = torch.where(logp > -LOGP_CLIP, logp, -LOGP_CLIP)
            ok = valid[n][enc]
            total = torch.where(ok, scores.unsqueeze(-1) + logp, float("-inf")).reshape(-1)
            scores, top = torch.topk(total, torch.minimum(beam, ok.sum()))
            parent, code = top // size, top % size
            enc = enc[parent] * size + code
            if n + 1 < levels:
                m2ts = m2ts[parent] + t_keys[0, (levels + n) * size:(levels + n + 1) * size][code].unsqueeze(-1)
                cache = [(None, None) if k is None else (k[parent], v[parent]) for k, v in cache]
        digits = size ** torch.arange(levels - 1, -1, -1)
        return enc.unsqueeze(-1) // digits % size, scores
