"""The recall budget's validation sweep: in-process GRDR recall per budget, catalog size by catalog size,
on the validation queries of a model trained with `grdr train --holdout` (never test queries).

    python -m bench.recall_budget --dataset ../shared/datasets/tvr-proxy/msrvtt --model MODEL_DIR \\
        --scales 1000,10000,30000,100000 --budgets 300,1000,3000,10000,20000

Each catalog is the dataset grown to that size (grdr_plugin.growth); the pool rule is the query layer's
(grdr_plugin.pool), applied by `grdr_plugin.evaluation.sweep` (each catalog encoded and each query decoded
once for all budgets).  The default budget's row is marked.  `--level L` takes the pool at prefixes of L codes
(the recall level a tuned model may serve at) instead of whole IDs; `--size-penalties 0,0.5,1` sweeps the pool
rule's turn (grdr_plugin.pool.SIZE_PENALTY: 0 takes the decoded IDs in the decoder's order).  The default
budget is the pool rule's share of each catalog's postings, or with `--served-by M` the budget model M serves
that catalog with (its serving records at each size tuned: grdr_plugin.pool.BudgetRule).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Optional

from bench.output import add_json_flag, emit, float_list, int_list
from grdr_plugin.data import Dataset, load_dataset
from grdr_plugin.evaluation import encode_catalog, sweep
from grdr_plugin.growth import with_grown_catalog
from grdr_plugin.metrics import share_of
from grdr_plugin.model.artifacts import read_config
from grdr_plugin.pool import DEFAULT_BEAM, SIZE_PENALTY, BudgetRule
from grdr_plugin.runtime import ModelRuntime
from grdr_plugin.validation import holdout_split, load_spec


def validation_split(src: Dataset, model: Path) -> Dataset:
    """`src` reduced to the model's validation queries (its catalog whole)."""
    spec = load_spec(model)
    if spec is None:
        raise SystemExit(f"--model: {model} was trained without --holdout; train one with `grdr train --holdout 0.2`")
    return holdout_split(src, spec)


def run(dataset: Path, model: Path, scales: list[int], budgets: list[int], beam: int = DEFAULT_BEAM,
        level: Optional[int] = None, size_penalties: tuple[float, ...] = (SIZE_PENALTY,),
        served_by: Optional[Path] = None) -> dict[str, Any]:
    """`level`: the recall level the pool takes (default: whole IDs); `size_penalties`: the pool rule's, each a
    sweep of its own; `served_by`: the model whose default budget is marked (default: the pool rule's share)."""
    rule = read_config(served_by).budget_rule() if served_by is not None else BudgetRule()
    val = validation_split(load_dataset(dataset), model)
    runtime = ModelRuntime(model)
    level = runtime.cfg.levels if level is None else level
    if not 1 <= level <= runtime.cfg.levels:
        raise SystemExit(f"--level: {level} is not one of the model's ID levels (1 to {runtime.cfg.levels})")
    out: dict[str, Any] = {"dataset": val.name, "model": str(model), "beam": beam, "recall_level": level,
                           "queries": len(val.test_queries()), "scales": []}
    for n in scales:
        with tempfile.TemporaryDirectory(prefix="grdr-recall-budget-") as work:
            ds = with_grown_catalog(val, n, work)
            catalog = encode_catalog(ds, runtime)
            default = rule.budget(catalog.index.postings)
            rows = []
            for penalty in size_penalties:
                dense, grid = sweep(ds, runtime, catalog, ds.test_queries(),
                                    [(beam, budget, level) for budget in dict.fromkeys([default, *budgets])],
                                    size_penalty=penalty)
                rows += [{"default": r["max_pool"] == default, "size_penalty": penalty, "dense_R@10": dense["R@10"],
                          **r} for r in grid]
            out["scales"].append({"videos": ds.n_videos, "postings": catalog.index.postings, "rows": rows})
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| videos | budget | size penalty | candidate recall | R@10 | % of dense R@10 (± its standard error) | "
             "mean pool |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for scale in result["scales"]:
        for r in sorted(scale["rows"], key=lambda r: (r["max_pool"], r["size_penalty"])):
            budget = f"**{r['max_pool']:,}** (default)" if r["default"] else f"{r['max_pool']:,}"
            share = f"{share_of(r['R@10'], r['dense_R@10']):.1f} ± {r['of_dense_se']['R@10']:.1f}"
            lines.append(f"| {scale['videos']:,} | {budget} | {r['size_penalty']:g} | {r['candidate_recall']:.2f} | "
                         f"{r['R@10']:.2f} | {share} | {r['pool_mean']:,.0f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="a model folder trained with --holdout")
    ap.add_argument("--scales", type=int_list, default=[1000, 10000, 100000])
    ap.add_argument("--budgets", type=int_list, default=[300, 1000, 3000, 10000])
    ap.add_argument("--beam", type=int, default=DEFAULT_BEAM)
    ap.add_argument("--level", type=int, default=None,
                    help="the recall level: codes of an ID the pool is taken at (default: whole IDs)")
    ap.add_argument("--size-penalties", type=float_list, default=[SIZE_PENALTY],
                    help="the pool rule's size penalties to sweep (0: the decoder's order)")
    ap.add_argument("--served-by", type=Path, default=None,
                    help="mark the budget this model serves each catalog with (default: the pool rule's share)")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    result = run(args.dataset, args.model, args.scales, args.budgets, args.beam, args.level,
                 tuple(args.size_penalties), args.served_by)
    return emit(result, table(result), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
