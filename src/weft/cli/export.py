"""``weft export RUN --web SITE/``: write a trained language model as a static web page."""

from __future__ import annotations

from pathlib import Path

import click

from weft.export.web import WEIGHT_FORMATS


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--web", "site", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the page into (index.html, its scripts, the weights); it "
              "runs the model in the browser from any static host.")
@click.option("--weights", type=click.Choice(WEIGHT_FORMATS), default="float16",
              show_default=True,
              help="How the page stores the weights: float16 (half of float32's size; "
              "log-probabilities move by up to about 2e-3), int8 with a scale per row (a "
              "quarter; up to about 5e-2), or float32 (exact).")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def export(run: Path, site: Path, weights: str, force: bool) -> None:
    """Export the model in RUN (a run directory, or builtin:english) to run elsewhere."""
    from weft.api import load_language_model
    from weft.builtin import resolve_run
    from weft.errors import WeftError
    from weft.runs import TAGGER, read_run_config, run_kind

    if run_kind(read_run_config(resolve_run(run))) == TAGGER:
        raise WeftError(f"{run} is a tagger run: the web export runs language models only")
    model = load_language_model(run, device="cpu")
    out = model.export_web(site, weights=weights, force=force)
    size = sum(p.stat().st_size for p in out.iterdir())
    click.echo(f"wrote {out}/ ({size / 1e6:.1f} MB); serve it with: "
               f"python -m http.server -d {out}")
