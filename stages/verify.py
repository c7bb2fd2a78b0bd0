"""verify: face-pair verification from the embeddings: a pair head against cosine.

Pairs come from the prepared ``pairs.parquet`` (LFW's pairs file, its folds as splits) or
are drawn from the identities (synthfaces: balanced by the first ``verify.groups`` column).
"""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import as_dict, from_params, load_params
from facebalance.data.embeddings import read_embeddings
from facebalance.data.face_pairs import attach_groups, load_pairs, present_groups
from facebalance.models.verifier import VerifyConfig, verify_pairs
from facebalance.models.verify_outputs import VerifyOutputs
from facebalance.runtime import derive_seed, run_app, setup

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
    outputs = VerifyOutputs(model_dir, scores, report, metrics, table, roc, figure)
    rows, vectors = read_embeddings(embeddings)
    if not len(rows):  # embed skipped a dataset without identities
        outputs.write_skipped(
            "no embeddings (embed found no verification pairs; see metrics/embed.json)")
        return
    rows = attach_groups(rows, data, v.groups, v.group_file)
    groups = present_groups(rows, v.groups)
    seed = derive_seed(p.base.seed, 21)
    pairs, source = load_pairs(data, rows, groups, v.pairs_per_group, seed, v.cross_share)
    head, thresholds, full, scored = verify_pairs(rows, vectors, pairs, groups,
                                                  from_params(VerifyConfig, v, seed=seed))
    full = {"task": {"kind": "verification", "pairs": source, "groups": groups,
                     "groups_missing": [g for g in v.groups if g not in groups]},
            **full, "params": as_dict(v)}
    # Outputs last: a failure above leaves the previous ones as they were.
    outputs.write(head, thresholds, scored, full, v.features)


if __name__ == "__main__":
    run_app(app)
