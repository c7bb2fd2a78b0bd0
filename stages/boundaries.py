"""boundaries: fit target and protected hyperplanes in latent space on scored latents."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import read_parquet
from facebalance.errors import FacebalanceError
from facebalance.latent.boundaries import (
    Boundary,
    boundary_accuracy,
    fit_boundary,
    fit_group_boundaries,
)
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
    b = p.boundaries
    table, z = read_latents(latents)
    score = read_parquet(scores).set_index("id").loc[table["id"]]
    if len(z) < b.n_fit + b.n_val:
        raise FacebalanceError(f"boundaries: {latents} has {len(z)} latents, fewer than "
                               f"n_fit + n_val = {b.n_fit + b.n_val}")
    result, report = {}, {"method": b.method, "n_fit": b.n_fit, "n_val": b.n_val}
    for role in ("target", "protected"):
        labels = (score[role].to_numpy() >= 0.5).astype(int)
        fit, val = slice(0, b.n_fit), slice(b.n_fit, b.n_fit + b.n_val)
        boundary = fit_boundary(z[fit], labels[fit], b.method, b.c, derive_seed(p.base.seed, 6))
        result[role] = {**boundary.to_dict(), "attribute": getattr(p.dataset, role)}
        report[role] = {
            "attribute": getattr(p.dataset, role),
            "positive_rate": float(labels[fit].mean()),
            "accuracy_fit": boundary_accuracy(boundary, z[fit], labels[fit]),
            "accuracy_val": boundary_accuracy(boundary, z[val], labels[val]) if b.n_val else None,
        }
    bt, bg = (Boundary.from_dict(result[r]) for r in ("target", "protected"))
    report["cos_target_protected"] = float(bt.w @ bg.w)
    if b.domain_dependent:  # one target boundary per protected group (by its classifier)
        result["target_by_group"], report["target_by_group"] = fit_group_boundaries(
            z, (score["target"].to_numpy() >= 0.5).astype(int),
            (score["protected"].to_numpy() >= 0.5).astype(int), b, bg,
            derive_seed(p.base.seed, 6))
    write_json(out, result)
    write_json(metrics, report)


if __name__ == "__main__":
    run_app(app)
