"""augment: build a strategy's training set index (rows, repeats and weights)."""

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.inputs import read_added_rows, real_rows, strategy_index
from facebalance.balance.registry import strategy as strategy_spec
from facebalance.balance.strategies import synthetic_summary
from facebalance.config import load_params
from facebalance.data.shards import shards_digest, write_table_atomic
from facebalance.runtime import run_app, write_json

app = typer.Typer(add_completion=False)


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
    spec = strategy_spec(strategy)
    real, task = real_rows(p, data / "train")
    added = read_added_rows(spec, {"pairs": pairs, "generated": generated,
                                   "interpolated": interpolated, "guided": guided,
                                   "partners": partners}, n_real=len(real), augment=p.augment)
    index = strategy_index(strategy, real, task, p, added)
    table = pa.Table.from_pandas(index, preserve_index=False)
    if added.image_dirs:  # new pixels under the same ids must change this file (DVC retrains)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"facebalance.images": shards_digest(
                                                   added.image_dirs).encode()})
    write_table_atomic(table, out)
    if report is not None:
        write_json(report, {"strategy": strategy, "rows": len(index), **added.report,
                            **synthetic_summary(index)})


if __name__ == "__main__":
    run_app(app)
