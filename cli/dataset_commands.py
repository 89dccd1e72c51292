"""`grdr dataset build`: a training dataset from video files + captions (ingest/dataset_build.py does the work).

Exit codes (cli.console): 0 every video is in the dataset; 3 (partial) the dataset was written without the
videos or caption lines listed as skipped; 1 nothing was written (the error names the flag and the fix).
"""
from __future__ import annotations

from pathlib import Path

import typer

from cli.console import EXIT_PARTIAL, console, print_json, user_errors
from grdr_plugin.dataset_split import SplitSpec
from grdr_plugin.model.config import ModelConfig
from grdr_plugin.settings import get_settings

SHOWN_SKIPS = 20  # a long list of bad files is in meta.json; the terminal shows the first ones

app = typer.Typer(help="Build a training dataset from raw videos.", no_args_is_help=True)
_SPLIT = SplitSpec.model_fields  # the split's own defaults are the flags' defaults


@app.command()
def build(
    videos: str = typer.Option(..., "--videos", help="a quoted glob of video files (video_id = file name), one file, "
                                                     "or a .jsonl catalog of {video_id, path, ...metadata}"),
    captions: Path = typer.Option(..., "--captions", help=".jsonl lines {video_id, text}, or a .json annotation "
                                                          "list [{video, caption}] (key: video_id or file stem)"),
    image_encoder: Path = typer.Option(..., "--image-encoder",
                                       help="ONNX image encoder (+ sidecar .json) or a Hugging Face CLIP folder; "
                                            "ingest of the trained model's videos must use the same one"),
    out: Path = typer.Option(..., "--out", help="dataset folder to write (a rerun resumes from OUT/build/)"),
    frames: int = typer.Option(ModelConfig.model_fields["frames"].default, "--frames",
                               help="F: frames sampled per video, uniformly in time"),
    unseen: float = typer.Option(_SPLIT["unseen"].default, "--unseen",
                                 help="share of captioned videos kept out of training (searched with test queries)"),
    test_captions: float = typer.Option(_SPLIT["test_captions"].default, "--test-captions",
                                        help="share of seen videos' captions kept as test queries"),
    seed: int = typer.Option(_SPLIT["seed"].default, "--seed", help="seeds the seen/unseen and train/test split"),
    as_json: bool = typer.Option(False, "--json", help="the report (meta.json) as one JSON object on the last line"),
) -> None:
    """Decode, sample and embed video files, pair them with captions, write catalog, features, frames, queries."""
    with user_errors():
        from tqdm import tqdm

        from ingest.clip_export import onnx_encoder
        from ingest.dataset_build import BuildOptions, build_dataset

        encoder = onnx_encoder(image_encoder, get_settings().home / "image-encoders", console.print)
        opts = BuildOptions(videos=videos, captions=captions, image_encoder=encoder, out=out, frames=frames,
                            split=SplitSpec(unseen=unseen, test_captions=test_captions, seed=seed))
        with tqdm(unit="video", desc="embed", disable=None) as bar:
            def on_total(todo: int, done: int) -> None:
                bar.total = todo
                bar.refresh()
                if done:
                    console.print(f"resuming: {done} videos already embedded in {out / 'build'}")

            report = build_dataset(opts, progress=bar.update, on_total=on_total)
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        typer.echo(f"{out}: {report.videos} videos ({report.seen} seen, {report.unseen} unseen), "
                   f"{report.queries_train} train and {report.queries_test} test queries; "
                   f"{report.embedded} embedded now, {report.seconds:.1f} s")
        if report.videos_without_captions:
            typer.echo(f"  videos without a caption: {report.videos_without_captions} (in the catalog as unseen)")
        if report.captions_unmatched:
            typer.echo(f"  caption keys that name no video: {len(report.captions_unmatched)}, e.g. "
                       + ", ".join(report.captions_unmatched[:5]))
        for err in (report.skipped + report.caption_errors)[:SHOWN_SKIPS]:
            typer.echo(f"  skipped {err.video_id}: {err.reason}")
        if len(report.skipped) + len(report.caption_errors) > SHOWN_SKIPS:
            typer.echo(f"  ... every skipped input is in {out / 'meta.json'}")
        typer.echo(f"next: grdr train --dataset {out} --out MODEL_DIR")
    if report.skipped or report.caption_errors:
        raise typer.Exit(EXIT_PARTIAL)  # written, but some inputs were left out
