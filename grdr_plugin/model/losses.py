"""Losses of the co-training (all take and return torch tensors)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_positive_infonce(sims: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over rows with a positive of -log(sum_pos exp / sum_valid exp).

    sims [R, M] already divided by the temperature; pos, valid bool [R, M] (pos implies valid).
    Entries that are neither (e.g. a video's other views, which are right answers too) are
    excluded from the denominator instead of being pushed away.
    """
    neg_inf = torch.finfo(sims.dtype).min
    all_lse = torch.logsumexp(sims.masked_fill(~valid, neg_inf), dim=1)
    pos_lse = torch.logsumexp(sims.masked_fill(~pos, neg_inf), dim=1)
    has = pos.any(1)
    if not has.any():
        return sims.sum() * 0.0
    return (all_lse - pos_lse)[has].mean()


def query_view_contrastive(t: torch.Tensor, views: torch.Tensor, q_vid: torch.Tensor, q_view: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """Query-guided contrastive loss between queries and the views of the batch's videos.

    t [b, d] unit query vectors; views [u, K, d] unit views of the batch's unique videos;
    q_vid [b] index into u; q_view [b] the routed view.  Symmetric: query -> views (one
    positive) and view -> queries (multi-positive: every query routed to that view).
    """
    u, k, d = views.shape
    sims = t @ views.reshape(u * k, d).T / temperature  # [b, u*k]
    col_vid = torch.arange(u, device=t.device).repeat_interleave(k)
    col_view = torch.arange(k, device=t.device).repeat(u)
    same_vid = q_vid[:, None] == col_vid[None, :]
    pos = same_vid & (q_view[:, None] == col_view[None, :])
    valid = ~same_vid | pos
    q2v = multi_positive_infonce(sims, pos, valid)
    v2q = multi_positive_infonce(sims.T, pos.T, valid.T)
    return 0.5 * (q2v + v2q)


def dense_contrastive(tq: torch.Tensor, videos: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Query -> all candidate videos (cross-entropy; `target` indexes `videos`)."""
    return F.cross_entropy(tq @ videos.T / temperature, target)


def commitment_loss(residuals: list[torch.Tensor], words: list[torch.Tensor], beta: float) -> torch.Tensor:
    """VQ loss per level: codebook term ||sg(r) - e||^2 + beta * commitment ||r - sg(e)||^2."""
    total = residuals[0].new_zeros(())
    for r, e in zip(residuals, words):
        total = total + F.mse_loss(e, r.detach()) + beta * F.mse_loss(r, e.detach())
    return total * residuals[0].shape[-1]


def reconstruction_loss(x: torch.Tensor, words: list[torch.Tensor]) -> torch.Tensor:
    """The sum of the chosen codewords must reconstruct the view (cosine distance)."""
    recon = torch.stack(words, 0).sum(0)
    return (1 - F.cosine_similarity(recon, x.detach(), dim=-1)).mean()


def code_loss(t: torch.Tensor, codebooks: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-level code loss: the query's residual (t minus the target's earlier codewords) must
    pick the target code at each level by cosine, as the tokenizer does for the view.

    t [b, d]; codebooks [L, C, d]; target [b, l] codes of the routed view's ID (l levels).
    """
    loss = t.new_zeros(())
    r = t
    for lvl in range(target.shape[1]):
        book = codebooks[lvl]
        logits = scale * F.normalize(r, dim=-1) @ F.normalize(book, dim=-1).T
        loss = loss + F.cross_entropy(logits, target[:, lvl])
        r = r - book[target[:, lvl]]
    return loss / target.shape[1]


def generation_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Teacher-forced cross-entropy of the decoder; logits [b, l, C], target [b, l]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), label_smoothing=label_smoothing)
