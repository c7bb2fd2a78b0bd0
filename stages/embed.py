"""embed: face embeddings of every prepared image (verification).

``embed.model: facenet`` with ``weights: train`` trains the embedder on the training
identities (all but the ``embed.holdout`` share, whose pairs train the verification head);
named or file weights and ``dlib`` embed with pretrained networks.
"""

import logging
from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import as_dict, load_params
from facebalance.data.embeddings import embedding_rows, skip_reason
from facebalance.distributed import env_rank, start
from facebalance.models.embedder import EmbedOutputs, build_embedder, embed_images
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import derive_seed, run_app, setup

app = typer.Typer(add_completion=False)


log = logging.getLogger(__name__)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/, val/, test/)")],
    model_dir: Annotated[Path, typer.Option(help="directory to write the embedder to")],
    out: Annotated[Path, typer.Option(help="embeddings Parquet to write")],
    metrics: Annotated[Path, typer.Option(help="embedding summary JSON")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Embed train, val and test; train the embedder first when embed.weights is train."""
    p = load_params(params)
    device = setup(p.base)
    e = p.embed
    outputs = EmbedOutputs(model_dir, out, metrics)
    rows = embedding_rows(data, need_identity=False)
    summary: dict = {"model": e.model, "weights": e.weights}
    reason = skip_reason(data, rows)
    if reason:
        if env_rank() == 0:  # under a user's torchrun: rank 0 writes
            log.warning("embed: skipped: %s", reason)
            outputs.write_skipped(rows, summary, reason)
        return
    # Only a trained embedder trains: the rest (embedding every image) runs once, on rank 0.
    ranks = start(p.base.nproc if e.weights == "train" else 1, device, p.base.threads)
    precision = resolve_precision(p.base.precision, ranks.device)
    embedder, cfg, net, training = build_embedder(
        rows, e, image_size=p.base.image_size, seed=derive_seed(p.base.seed, 20),
        device=ranks.device, precision=precision)
    if not ranks.main:  # rank 0 embeds and writes
        return
    if training:
        summary["training"] = {**training, **precision_record(p.base.precision, precision)}
    rows, vectors, embedded = embed_images(embedder, rows, data, e, dim=cfg.dim,
                                           trained=bool(training), threads=p.base.threads)
    # Outputs last: a failure above leaves the previous ones as they were.
    outputs.write(cfg, net, e, rows, vectors, {**summary, **embedded, "params": as_dict(e)})


if __name__ == "__main__":
    run_app(app)
