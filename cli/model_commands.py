"""`grdr train` and `grdr eval` (torch is imported only when they run)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer

from cli.console import EXIT_ERROR, EXIT_USAGE, MAX_POOL_HELP, RECALL_LEVEL_HELP, console, fail, user_errors
from grdr_plugin.model.config import ModelConfig, TrainConfig
from grdr_plugin.model.retokenize import DEFAULT_EPOCHS_FIT, DEFAULT_EPOCHS_PER_LEVEL, RetokenizeOptions, retokenize
from grdr_plugin.tuning import DEFAULT_BEAMS, DEFAULT_CANDIDATE_RECALL, DEFAULT_SHARES, DEFAULT_TARGET

if TYPE_CHECKING:
    from grdr_plugin.settings import Settings

SHOWN_BLANK_LINES = 10  # line numbers named in the blank-line warning; the count says how many in all
# The model's and training's own defaults are the flags' defaults.
_MODEL, _TRAIN = ModelConfig.model_fields, TrainConfig.model_fields


def _fail(msg: str, code: int = EXIT_USAGE) -> NoReturn:
    raise fail(msg, code)


def _load(dataset: Path):
    """The dataset, or a one-line error naming the bad file/line/field."""
    from grdr_plugin.data import DatasetError, load_dataset

    try:
        ds = load_dataset(dataset)
    except DatasetError as exc:
        _fail(str(exc), EXIT_ERROR)
    if ds.blank_lines:
        shown = ", ".join(map(str, ds.blank_lines[:SHOWN_BLANK_LINES]))
        console.print(f"catalog.jsonl: {len(ds.blank_lines)} blank lines (line {shown}"
                      f"{', ...' if len(ds.blank_lines) > SHOWN_BLANK_LINES else ''}): their feature rows hold no "
                      "video and are left out", style="yellow", highlight=False)
    return ds


def train(
    dataset: Path = typer.Option(..., "--dataset",
                                 help="dataset folder (catalog.jsonl, features.npy, [frames.npy], queries.jsonl)"),
    out: Path = typer.Option(..., "--out", help="model folder to write"),
    views: int = typer.Option(_MODEL["views"].default, "--views", help="K: semantic IDs per video"),
    levels: int = typer.Option(_MODEL["levels"].default, "--levels", help="L: codes per ID"),
    codebook_size: Optional[int] = typer.Option(None, "--codebook-size",
                                                help="C; default from corpus size (see MODEL.md)"),
    decoder_layers: int = typer.Option(_MODEL["decoder_layers"].default, "--decoder-layers", min=1,
                                       help="transformer blocks of the ID decoder (see MODEL.md)"),
    device: str = typer.Option(_TRAIN["device"].default, "--device", help="cpu or cuda"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="epochs of the fit phase (others keep their defaults)"),
    epochs_per_level: Optional[int] = typer.Option(None, "--epochs-per-level"),
    seed: int = typer.Option(_TRAIN["seed"].default, "--seed"),
    routing: str = typer.Option(_TRAIN["routing"].default, "--routing", help="maxsim or kmeans"),
    threads: int = typer.Option(_TRAIN["threads"].default, "--threads", help="torch CPU threads"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint"),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="skip the ONNX export"),
    holdout: Optional[float] = typer.Option(
        None, "--holdout", help="hold out this share of seen videos (and 2 train queries of every other) for "
                                "`grdr eval --validation`; test queries are never used"),
    overrides: list[str] = typer.Option(
        [], "--set", help="any TrainConfig field, KEY=VALUE (repeatable), e.g. --set label_smoothing=0.2"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON summary on the last line"),
) -> None:
    """Train the GRDR model (tokenizer, generative retriever, dense reranker) on seen videos."""
    from pydantic import ValidationError

    from grdr_plugin.model.config import choose_codebook_size
    from grdr_plugin.validation import HOLDOUT_FILE, HoldoutSpec, holdout_split, save_spec

    ds = _load(dataset)
    if device not in ("cpu", "cuda"):
        _fail("--device must be cpu or cuda")
    spec = None
    if holdout is not None:
        try:
            spec = HoldoutSpec(fraction=holdout, seed=seed)
        except ValidationError:
            _fail(f"--holdout must be a share between 0 and 1 (exclusive), got {holdout}")
        ds = holdout_split(ds, spec)
    n_seen = int(ds.video_split.sum())
    c = codebook_size or choose_codebook_size(n_seen, views, levels)
    with user_errors():  # flags the model's config refuses (e.g. --levels and --codebook-size together)
        cfg = ModelConfig(views=views, levels=levels, codebook_size=c, decoder_layers=decoder_layers,
                          feature_dim=ds.features.shape[1], frames=ds.frames.shape[1], image_encoder=ds.image_encoder)
    upd = {"seed": seed, "device": device, "routing": routing, "threads": threads}
    if epochs is not None:
        upd["epochs_fit"] = epochs
    if epochs_per_level is not None:
        upd["epochs_per_level"] = epochs_per_level
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in TrainConfig.model_fields:
            _fail(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(TrainConfig.model_fields)}")
        upd[key] = value
    try:
        tc = TrainConfig(**upd)
    except ValidationError as exc:
        _fail("--set: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    from grdr_plugin.model.train import run_training

    console.print(f"training on {ds.name}: {n_seen} seen videos, {len(ds.train_queries())} train queries; "
                  f"K={views} L={levels} C={c}", highlight=False)
    summary = run_training(ds, out, cfg, tc, resume=resume, log=lambda msg: typer.echo(msg, err=True),
                           export_onnx=not no_onnx)
    if spec is not None:
        save_spec(out, spec)
    else:  # a model folder re-trained without --holdout must not claim a validation split
        (out / HOLDOUT_FILE).unlink(missing_ok=True)
    st = summary["stats"]
    typer.echo(f"done in {summary['seconds_total']:.0f}s; {st['ids_distinct']} distinct IDs, "
               f"{st['videos_per_id_mean']:.2f} videos/ID (max {st['videos_per_id_max']}); per level "
               + ", ".join(f"L{x['level']} util {x['utilisation']:.2f} ppl {x['perplexity']:.1f}"
                           for x in st["levels"]))
    typer.echo(f"model folder: {out} (fingerprint {summary['fingerprint'][:12]})")
    if json_out:
        typer.echo(json.dumps(summary))


def eval_cmd(
    dataset: Path = typer.Option(..., "--dataset"),
    model: Path = typer.Option(..., "--model"),
    mode: str = typer.Option("all", "--mode", help="grdr, dense or all; with --index: grdr (all), hybrid-union, "
                                                   "hybrid-rrf or bm25"),
    beam: Optional[int] = typer.Option(None, "--beam", min=1, help="B: IDs kept by the beam search (default: the "
                                                                    "model's for the catalog's size, config.json "
                                                                    "serving)"),
    max_pool: Optional[int] = typer.Option(None, "--max-pool", min=1, help=MAX_POOL_HELP),
    recall_level: Optional[int] = typer.Option(None, "--recall-level", min=1, help=RECALL_LEVEL_HELP),
    backend: str = typer.Option("onnx", "--backend",
                                help="onnx (what serving runs) or torch (needs the train extra)"),
    threads: int = typer.Option(_TRAIN["threads"].default, "--threads", help="CPU threads (torch or onnxruntime)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N test queries (quick checks)"),
    validation: bool = typer.Option(False, "--validation",
                                    help="score the model's held-out train queries (model trained with --holdout) "
                                         "instead of test queries"),
    k: Optional[int] = typer.Option(
        None, "--k", min=1, help="--index: hits asked per query (default the recall budget, so MdR/MnR rank the whole "
                                 "pool; 10: latency as a k=10 search sees it)"),
    index: Optional[str] = typer.Option(
        None, "--index", help="evaluate through OpenSearch: the Searcher over this catalog alias (ingested with the "
                              "dataset and MODEL), with per-stage latency; see MODEL.md for MdR/MnR there"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="query encoder graph, int8 or float (default: "
                                                                  "GRDR_QUERY_ENCODER, else int8; see MODEL.md)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on the last line"),
) -> None:
    """Evaluate on the dataset's test queries over the full corpus (in process, or through OpenSearch: --index)."""
    from tqdm import tqdm

    from grdr_plugin.evaluation import evaluate

    ds = _load(dataset)
    if validation:
        ds = _validation_split(ds, model, "--validation")
    settings = _settings_with_encoder(encoder, backend)
    if index is not None:
        _eval_index(ds, model, index, mode=mode, beam=beam, max_pool=max_pool, recall_level=recall_level,
                    backend=backend, threads=threads, limit=limit, k=k, settings=settings, json_out=json_out)
        return
    if mode not in ("grdr", "dense", "all"):
        _fail("--mode must be grdr, dense or all")
    modes = ("grdr", "dense") if mode == "all" else (mode,)
    if backend == "onnx":
        from grdr_plugin.runtime import ModelRuntime

        be = ModelRuntime(model, threads=threads, encoder=settings.query_encoder)
    else:
        from grdr_plugin.model.torch_backend import TorchBackend

        be = TorchBackend(model, threads=threads)
    rows = ds.test_queries()[:limit] if limit else ds.test_queries()
    with tqdm(total=len(rows), desc="eval", unit="q", disable=None) as bar:
        with user_errors():
            if recall_level is not None and recall_level > be.cfg.levels:
                raise ValueError(f"--recall-level: {recall_level} is more than the model's {be.cfg.levels} ID levels")
        res = evaluate(ds, be, modes, beam=beam, max_pool=max_pool, progress=bar.update, query_rows=rows,
                       recall_level=recall_level)
    res["encoder"] = be.query_encoder if backend == "onnx" else "float"  # torch runs the float encoder
    typer.echo(f"query encoder: {res['encoder']}")
    for m in modes:
        typer.echo(f"{m:6s} " + " ".join(f"{k}={v}" for k, v in res[m].items()))
    if "grdr" in modes:
        for s in ("seen", "unseen"):
            part = res["by_split"][s]
            dense = f" dense={part['dense']['R@10']}" if "dense" in modes else ""
            typer.echo(f"  {s:6s} R@10 grdr={part['grdr']['R@10']}{dense}")
    if json_out:
        typer.echo(json.dumps(res))


def _settings_with_encoder(encoder: Optional[str], backend: str) -> "Settings":
    """The run-time settings, `--encoder` over GRDR_QUERY_ENCODER's choice."""
    from typing import get_args

    from grdr_plugin.model.config import QueryEncoder
    from grdr_plugin.settings import Settings, get_settings

    if encoder is None:
        with user_errors():
            return get_settings()
    if encoder not in get_args(QueryEncoder):
        _fail(f"--encoder must be one of {', '.join(get_args(QueryEncoder))}, got {encoder!r}")
    if backend != "onnx" and encoder != "float":
        _fail(f"--encoder {encoder}: the torch backend runs the float encoder; use --backend onnx")
    with user_errors():
        return Settings(query_encoder=encoder)


def _eval_index(ds, model: Path, index: str, *, mode: str, beam: Optional[int], max_pool: Optional[int],
                recall_level: Optional[int], backend: str, threads: int, limit: Optional[int], k: Optional[int],
                settings: "Settings", json_out: bool) -> None:
    """`grdr eval --index`: bench.evaluate through the Searcher, one query at a time."""
    from tqdm import tqdm

    from bench.evaluate import MODES, evaluate_through_opensearch, full_pool_k
    from query.searcher import Searcher

    if mode == "dense":
        _fail("--mode dense scores every video in process; drop --index, or pick grdr, hybrid-union, hybrid-rrf, bm25")
    if mode != "all" and mode not in MODES:
        _fail(f"--mode with --index must be one of {', '.join(MODES)} (all = grdr)")
    if backend != "onnx":
        _fail("--backend: --index searches with the ONNX runtime that serving runs; drop --backend torch")
    modes = ("grdr",) if mode == "all" else (mode,)
    with user_errors():
        searcher = Searcher(model, index, settings=settings, beam_size=beam, max_pool=max_pool,
                            recall_level=recall_level, threads=threads).connect()
        total = len(ds.test_queries()[:limit] if limit else ds.test_queries()) * len(modes)
        with tqdm(total=total, desc=f"eval {index}", unit="q", disable=None) as bar:
            res = evaluate_through_opensearch(ds, searcher, modes=modes, limit=limit, progress=bar.update,
                                              k=full_pool_k(searcher) if k is None else k)
    res["encoder"] = searcher.runtime.query_encoder
    typer.echo(f"query encoder: {res['encoder']}")
    for m in modes:
        metrics = {key: v for key, v in res[m].items() if key != "stages_ms"}
        typer.echo(f"{m:6s} " + " ".join(f"{key}={v}" for key, v in metrics.items()))
        for stage, lat in res[m].get("stages_ms", {}).items():
            typer.echo(f"  {stage:10s} " + " ".join(f"{key}={v}" for key, v in lat.items()))
    if json_out:
        typer.echo(json.dumps(res))


def retokenize_cmd(
    model: Path = typer.Option(..., "--model", help="the trained model folder whose IDs have crowded"),
    dataset: Path = typer.Option(..., "--dataset", help="the whole catalog as a dataset folder (seen videos with "
                                                        "their train captions, later videos unseen)"),
    out: Path = typer.Option(..., "--out", help="new model folder to write"),
    codebook_size: Optional[int] = typer.Option(None, "--codebook-size", min=2,
                                                help="new C, at least the model's; default from catalog size"),
    epochs_per_level: int = typer.Option(DEFAULT_EPOCHS_PER_LEVEL, "--epochs-per-level", min=1),
    epochs: int = typer.Option(DEFAULT_EPOCHS_FIT, "--epochs", min=1, help="epochs of the decoder refit (fit phase)"),
    index: str = typer.Option("ALIAS", "--index", help="the catalog alias, for the next command printed"),
    device: str = typer.Option(_TRAIN["device"].default, "--device", help="cpu or cuda"),
    seed: int = typer.Option(_TRAIN["seed"].default, "--seed"),
    threads: int = typer.Option(_TRAIN["threads"].default, "--threads", min=1, help="torch CPU threads"),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="skip the ONNX export"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON summary on the last line"),
) -> None:
    """New, larger codebooks for a model on its grown catalog; text encoder, reranker and view heads kept.
    Then move the catalog to the new IDs with `grdr ingest --reindex` (docs/RETOKENIZE.md)."""
    ds = _load(dataset)
    with user_errors():
        opts = RetokenizeOptions(codebook_size=codebook_size, epochs_per_level=epochs_per_level, epochs_fit=epochs,
                                 seed=seed, threads=threads, device=device, export_onnx=not no_onnx)
        summary = retokenize(model, ds, out, opts, log=lambda msg: typer.echo(msg, err=True))
    c, before, after = summary["codebook_size"], summary["before"], summary["stats"]
    typer.echo(f"C {c['old']} -> {c['new']} in {summary['seconds_total']:.0f}s; distinct IDs "
               f"{before['ids_distinct']} -> {after['ids_distinct']}; videos per ID mean "
               f"{before['videos_per_id_mean']:.2f} -> {after['videos_per_id_mean']:.2f}, max "
               f"{before['videos_per_id_max']} -> {after['videos_per_id_max']}")
    typer.echo(f"model folder: {out} (fingerprint {summary['fingerprint'][:12]}, from "
               f"{summary['retokenized_from']['fingerprint'][:12]})")
    typer.echo(f"next: grdr ingest --dataset {dataset} --model {out} --index {index} --reindex --wait "
               f"(then restart `grdr serve` with --model {out})")
    if json_out:
        typer.echo(json.dumps(summary))


def _validation_split(ds, model: Path, flag: str):
    """`ds` reduced to the validation split recorded in `model` (trained with --holdout), or a usage error."""
    from grdr_plugin.validation import holdout_split, load_spec

    spec = load_spec(model)
    if spec is None:
        _fail(f"{flag}: {model} was trained without --holdout; train one with `grdr train --holdout 0.2`")
    return holdout_split(ds, spec)


def tune_cmd(
    dataset: Path = typer.Option(..., "--dataset", help="the dataset the models were trained on"),
    model: Path = typer.Option(..., "--model", help="model folder whose serving defaults are set"),
    validation_model: Optional[Path] = typer.Option(
        None, "--validation-model", help="a model trained on the same dataset with `grdr train --holdout`, whose "
                                         "validation split is scored (default: --model itself)"),
    beams: list[int] = typer.Option(list(DEFAULT_BEAMS), "--beam", help="a beam of the grid (repeatable)"),
    shares: list[float] = typer.Option(list(DEFAULT_SHARES), "--share",
                                       help="a recall-budget share of the catalog's postings (repeatable)"),
    levels: Optional[list[int]] = typer.Option(
        None, "--level", min=1, help="a recall level of the grid (repeatable; default: whole IDs and their prefixes "
                                     "one level shorter)"),
    target: float = typer.Option(DEFAULT_TARGET, "--target",
                                 help="GRDR R@1/5/10 as a share of dense's that the choice must reach"),
    candidate_recall: float = typer.Option(DEFAULT_CANDIDATE_RECALL, "--candidate-recall", min=0, max=100,
                                           help="% of queries whose video the pool must hold (0: no such target)"),
    scale: Optional[int] = typer.Option(
        None, "--scale", min=1, help="score over the catalog grown to this many videos by noisy copies (a size it "
                                     "will serve, recorded beside the others; default: the dataset's own)"),
    threads: int = typer.Option(1, "--threads", help="onnxruntime threads"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the sweep and the choice; write nothing"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on the last line"),
) -> None:
    """Choose the beam and recall budget --model serves with by default, on held-out training queries (never test
    queries), and record them in its config.json (`serving`; with --scale, `serving_at_scale`, beside the records
    of other sizes: each catalog is served with the one tuned nearest its size). The fingerprint and indices are
    unchanged."""
    from tqdm import tqdm

    from grdr_plugin.growth import with_grown_catalog
    from grdr_plugin.model.artifacts import read_config, write_config
    from grdr_plugin.pool import check_beam_size
    from grdr_plugin.runtime import ModelRuntime
    from grdr_plugin.tuning import tune

    with user_errors():
        for beam in beams:
            check_beam_size(beam)
        if not all(0 < share <= 1 for share in shares):
            raise ValueError("--share: each must be in (0, 1], e.g. 0.025")
        if not 0 < target <= 1:
            raise ValueError("--target: a share in (0, 1], e.g. 0.98")
        served = read_config(model)
        scored_model = validation_model or model
        scored = read_config(scored_model)
    differ = [f"{k} {getattr(scored, k)} != {getattr(served, k)}" for k in ("views", "levels", "codebook_size")
              if getattr(scored, k) != getattr(served, k)]
    if differ:
        _fail(f"--validation-model: its IDs are not shaped like --model's ({', '.join(differ)}); train it with the "
              "same flags and --holdout 0.2")
    if levels and max(levels) > served.levels:
        _fail(f"--level: {max(levels)} is more than the IDs' {served.levels} levels")
    ds = _validation_split(_load(dataset), scored_model, "--validation-model" if validation_model else "--model")
    runtime = ModelRuntime(scored_model, threads=threads)
    dataset_videos = ds.n_videos
    with tempfile.TemporaryDirectory(prefix="grdr-tune-") as work:
        if scale is not None:
            if scale <= ds.n_videos:
                _fail(f"--scale: {scale:,} is not more than the dataset's {ds.n_videos:,} videos; leave it out to "
                      "score over the dataset as it is")
            with user_errors():
                ds = with_grown_catalog(ds, scale, work)
        with tqdm(total=len(ds.test_queries()), desc="tune", unit="q", disable=None) as bar:
            record, result = tune(ds, runtime, beams=beams, shares=shares, levels=levels or None, target=target,
                                  candidate_recall=candidate_recall, progress=bar.update)
    dense = result["dense"]
    grown = f", grown from {dataset_videos:,} by noisy copies" if scale is not None else ""
    typer.echo(f"{result['queries']:,} validation queries over {result['videos']:,} videos{grown} "
               f"({result['postings']:,} postings); dense R@1/5/10 {dense['R@1']} / {dense['R@5']} / {dense['R@10']}")
    for row in result["grid"]:
        of, se = row["of_dense"], row["of_dense_se"]
        typer.echo(f"level {row['recall_level']} beam {row['beam']:>4} share {row['share']:<6} budget "
                   f"{row['max_pool']:>6,}: cand {row['candidate_recall']:.2f} R@1/5/10 {of['R@1']} / {of['R@5']} / "
                   f"{of['R@10']} % of dense (± {se['R@1']} / {se['R@5']} / {se['R@10']}), pool "
                   f"{row['pool_mean']:,.0f}, est. {row['cost_us'] / 1000:.1f} ms")
    reached = "reaches" if record.tuned_on.met else "does not reach"
    got = record.tuned_on
    level = record.recall_level or served.levels
    typer.echo(f"chosen: level {level}, beam {record.beam_size}, share {record.pool_share}: R@1/5/10 "
               f"{' / '.join(map(str, got.of_dense.values()))} % of dense, candidate recall {got.candidate_recall} "
               f"({reached} both {target:.0%} of dense and candidate recall {candidate_recall})")
    if not dry_run:
        write_config(model, served.with_tuned(record, scaled=scale is not None))
        where = ("serving" if scale is None else
                 f"serving_at_scale, for catalogs near {record.tuned_on.videos:,} videos")
        typer.echo(f"recorded in {model}/config.json ({where}); searches, `grdr serve` and `grdr eval` use it "
                   "unless given --beam / --max-pool")
    if json_out:
        typer.echo(json.dumps(result))


def export_cmd(model: Path = typer.Option(..., "--model", help="model folder written by `grdr train`")) -> None:
    """(Re)write MODEL/onnx/ from the saved weights, e.g. after an upgrade adds serving graphs.
    The fingerprint (weights + config) does not change, so indices built by the model stay valid."""
    from grdr_plugin.model.artifacts import WEIGHTS
    from grdr_plugin.model.export import export_onnx

    if not (model / WEIGHTS).is_file():
        _fail(f"--model: {model / WEIGHTS} not found; train a model with `grdr train` first")
    out = export_onnx(model)
    typer.echo(f"wrote {', '.join(sorted(p.name for p in out.glob('*.onnx')))} to {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("retokenize")(retokenize_cmd)
    app.command("export")(export_cmd)
    app.command("eval")(eval_cmd)
    app.command("tune")(tune_cmd)
