"""augment: build a strategy's training set index (rows, repeats and weights)."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.strategies import (
    PAIR_STRATEGIES,
    added_rows,
    build_training_index,
    pair_rows,
    select_pairs,
    synthetic_summary,
)
from facebalance.choices import GUIDED_STRATEGIES, INTERPOLATION_STRATEGIES
from facebalance.config import load_params
from facebalance.data.shards import read_parquet, shard_refs, shards_digest, write_table_atomic
from facebalance.errors import FacebalanceError
from facebalance.runtime import derive_seed, run_app, write_json
from facebalance.task import param_columns, task_from_params, task_labels

app = typer.Typer(add_completion=False)


def _added_rows(table: pd.DataFrame, table_path: Path, images: Path) -> pd.DataFrame:
    """Index rows of the generated images a table lists (``id``, labels, ``group``); an
    empty table has no shards to read."""
    refs = (shard_refs(images, ["id"]) if len(table)
            else pd.DataFrame(columns=["path", "_file", "_row", "id"]))
    return added_rows(table, refs, str(table_path))


@app.command()
def main(
    strategy: Annotated[str, typer.Option(help="balancing strategy")],
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    out: Annotated[Path, typer.Option(help="training set index (Parquet) to write")],
    pairs: Annotated[Path | None, typer.Option(help="z/z' pair set (GAN strategies)")] = None,
    generated: Annotated[Path | None, typer.Option(help="sampled G(z) shards")] = None,
    interpolated: Annotated[Path | None, typer.Option(
        help="interpolate stage output (latent_smote, pixel_smote)")] = None,
    guided: Annotated[Path | None, typer.Option(help="guide stage output (guided)")] = None,
    partners: Annotated[Path | None, typer.Option(
        help="complement_real stage output (gan_complement_real)")] = None,
    report: Annotated[Path | None, typer.Option(
        help="JSON of the synthetic budget: pairs available, kept by the filters, used")] = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Write the training set index of one strategy."""
    p = load_params(params)
    train = shard_refs(data / "train", ["id", *param_columns(p)])
    task = task_from_params(p, train)
    real = pd.concat([train[["path", "_file", "_row", "id"]], task_labels(task, train)],
                     axis=1)
    pair_index, budget, added, synthetic_dirs = None, None, {}, []
    if strategy in PAIR_STRATEGIES:
        if pairs is None or generated is None:
            raise FacebalanceError(f"augment: {strategy} needs --pairs and --generated")
        dirs = [d for d in (generated, pairs / "images", pairs / "images_z") if d.exists()]
        refs = pd.concat([shard_refs(d, ["id"]) for d in dirs], ignore_index=True)
        table = read_parquet(pairs / "pairs.parquet",
                             columns=["id_z", "id_zp", "label", "target_z", "protected_z",
                                      "protected_zp", "flip_ok"])
        a = p.augment
        chosen, budget = select_pairs(table, n_real=len(real), share=a.synthetic_share,
                                      weight=a.synthetic_weight, label_margin=a.label_margin,
                                      confirm_flip=a.confirm_flip)
        pair_index = pair_rows(chosen, refs)
        synthetic_dirs = dirs
    if strategy in INTERPOLATION_STRATEGIES:
        if interpolated is None:
            raise FacebalanceError(f"augment: {strategy} needs --interpolated")
        plan = read_parquet(interpolated / "plan.parquet")
        images = interpolated / ("latent" if strategy == "latent_smote" else "pixel")
        added["interpolated"] = _added_rows(plan, interpolated / "plan.parquet", images)
        synthetic_dirs = [images]
    if strategy == "gan_complement_real":
        if partners is None:
            raise FacebalanceError(f"augment: {strategy} needs --partners")
        made = read_parquet(partners / "partners.parquet", columns=["id", "label", "group"])
        added["partners"] = _added_rows(made, partners / "partners.parquet",
                                        partners / "images")
        synthetic_dirs = [partners / "images"]
    if strategy in GUIDED_STRATEGIES:
        if guided is None:
            raise FacebalanceError(f"augment: {strategy} needs --guided")
        made = read_parquet(guided / "guided.parquet", columns=["id", "label", "group", "agrees"])
        # Only faces the group classifier still puts in their group as stored (PNG).
        made = made[made["agrees"]].drop(columns="agrees")
        added["guided"] = _added_rows(made, guided / "guided.parquet", guided / "images")
        synthetic_dirs = [guided / "images"]
    index = build_training_index(strategy, real, task=task, seed=derive_seed(p.base.seed, 3),
                                 oversample_to=p.augment.oversample_to,
                                 reweight_mode=p.augment.reweight_mode, pairs=pair_index,
                                 synthetic_weight=p.augment.synthetic_weight,
                                 **added)
    table = pa.Table.from_pandas(index, preserve_index=False)
    if synthetic_dirs:  # new pixels under the same ids must change this file (DVC retrains)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"facebalance.images": shards_digest(
                                                   synthetic_dirs).encode()})
    write_table_atomic(table, out)
    if report is not None:
        write_json(report, {"strategy": strategy, "rows": len(index), **(budget or {}),
                            **synthetic_summary(index)})


if __name__ == "__main__":
    run_app(app)
