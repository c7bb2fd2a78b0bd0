"""verify: face-pair verification from the embeddings: a pair head against cosine.

Pairs come from the prepared ``pairs.parquet`` (LFW's pairs file, its folds as splits) or
are drawn from the identities (synthfaces: balanced by the first ``verify.groups`` column).
"""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import as_dict, load_params
from facebalance.data.shards import atomic_directory, atomic_write_bytes, write_table_atomic
from facebalance.models.embedder import read_embeddings
from facebalance.models.pair_head import save_verifier
from facebalance.models.verifier import (
    VerifyConfig,
    attach_groups,
    empty_png,
    headline,
    load_pairs,
    markdown_table,
    plot_roc,
    present_groups,
    roc_points,
    verify_pairs,
)
from facebalance.runtime import derive_seed, run_app, setup, write_csv, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (group columns, pairs.parquet)")],
    embeddings: Annotated[Path, typer.Option(help="embeddings Parquet of the embed stage")],
    model_dir: Annotated[Path, typer.Option(help="directory to write head.json to")],
    metrics: Annotated[Path, typer.Option(help="headline metrics JSON (DVC metrics)")],
    report: Annotated[Path, typer.Option(help="full report JSON: intervals, groups")],
    table: Annotated[Path, typer.Option(help="markdown table: head vs cosine")],
    roc: Annotated[Path, typer.Option(help="ROC points CSV (DVC plot)")],
    figure: Annotated[Path, typer.Option(help="ROC PNG")],
    scores: Annotated[Path, typer.Option(help="test pair scores Parquet to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Fit the head on train pairs, thresholds on val, every metric on test."""
    p = load_params(params)
    setup(p.base)
    v = p.verify
    rows, vectors = read_embeddings(embeddings)
    if not len(rows):  # embed skipped a dataset without identities
        reason = "no embeddings (embed found no verification pairs; see metrics/embed.json)"
        skipped = {"task": {"kind": "verification"}, "skipped": reason}
        with atomic_directory(model_dir) as tmp:
            write_json(tmp / "skipped.json", skipped)
        write_table_atomic(pd.DataFrame({"id_a": [], "id_b": [], "same": []}), scores)
        write_json(report, skipped)
        write_json(metrics, {"skipped": reason})
        atomic_write_bytes(table, f"verification skipped: {reason}\n".encode())
        write_csv(roc, pd.DataFrame({"verifier": [], "fmr": [], "tar": []}))
        atomic_write_bytes(figure, empty_png())
        return
    rows = attach_groups(rows, data, v.groups, v.group_file)
    groups = present_groups(rows, v.groups)
    seed = derive_seed(p.base.seed, 21)
    pairs, source = load_pairs(data, rows, groups, v.pairs_per_group, seed, v.cross_share)
    cfg = VerifyConfig(features=tuple(v.features), c=v.c, fars=tuple(v.fars),
                       bootstrap=v.bootstrap, seed=seed)
    head, thresholds, full, scored = verify_pairs(rows, vectors, pairs, groups, cfg)
    full = {"task": {"kind": "verification", "pairs": source, "groups": groups,
                     "groups_missing": [g for g in v.groups if g not in groups]},
            **full, "params": as_dict(v)}
    points = roc_points(scored)
    # Outputs last: a failure above leaves the previous ones as they were.
    with atomic_directory(model_dir) as tmp:
        save_verifier(tmp / "head.json", head, thresholds,
                      {"kind": "verification", "features": list(v.features)})
    write_table_atomic(scored, scores)
    write_json(report, full)
    write_json(metrics, headline(full))
    atomic_write_bytes(table, markdown_table(full).encode())
    write_csv(roc, points)
    atomic_write_bytes(figure, plot_roc(points, full))


if __name__ == "__main__":
    run_app(app)
