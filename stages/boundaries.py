"""boundaries: fit target and protected hyperplanes in latent space on scored latents."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import read_parquet
from facebalance.latent.boundaries import fit_attribute_boundaries
from facebalance.latent.sampling import read_latents
from facebalance.runtime import derive_seed, run_app, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    latents: Annotated[Path, typer.Option(help="sampled latents")],
    scores: Annotated[Path, typer.Option(help="scores of their images")],
    out: Annotated[Path, typer.Option(help="boundaries JSON to write")],
    metrics: Annotated[Path, typer.Option(help="boundary accuracy JSON to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Fit on the first boundaries.n_fit latents, report accuracy on the next n_val."""
    p = load_params(params)
    table, z = read_latents(latents)
    score = read_parquet(scores).set_index("id").loc[table["id"]]
    result, report = fit_attribute_boundaries(
        z, {r: score[r].to_numpy() for r in ("target", "protected")},
        {r: getattr(p.dataset, r) for r in ("target", "protected")}, p.boundaries,
        derive_seed(p.base.seed, 6), source=str(latents))
    write_json(out, result)
    write_json(metrics, report)


if __name__ == "__main__":
    run_app(app)
