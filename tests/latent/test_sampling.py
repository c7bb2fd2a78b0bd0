from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import read_columns, shard_refs
from facebalance.errors import FacebalanceError
from facebalance.latent.sampling import (
    generate_shards,
    latents_table,
    read_latents,
    sample_latents,
    score_shards_by_name,
    write_latents,
)
from facebalance.models.gan import GanConfig, Generator, generate_uint8


def test_latents_round_trip_as_fixed_size_list(tmp_path: Path) -> None:
    z = sample_latents(7, 5, seed=3)
    np.testing.assert_array_equal(z, sample_latents(7, 5, seed=3))
    path = tmp_path / "lat.parquet"
    write_latents(path, latents_table([f"a{i}" for i in range(7)], z, 3, {"s": np.arange(7)}))
    schema = pq.read_schema(path)
    assert schema.field("z").type == pa.list_(pa.float32(), 5)
    table, back = read_latents(path)
    np.testing.assert_array_equal(back, z)
    assert table.columns.tolist() == ["id", "seed", "s"]
    with pytest.raises(FacebalanceError, match="have no column 'w'"):
        read_latents(path, name="w")


def test_generate_shards_streams_every_latent_in_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = Generator(GanConfig(latent_dim=8, width=4)).eval()
    z = sample_latents(45, 8, seed=1)
    ids = [f"g{i}" for i in range(45)]
    n = generate_shards(gen, z, ids, tmp_path / "imgs", device=torch.device("cpu"),
                        batch_size=10, rows_per_file=20, row_group_size=7, progress=False)
    assert n == 45
    meta = read_columns(tmp_path / "imgs", ["id", "source", "weight"])
    assert meta["id"].tolist() == ids and (meta["source"] == "generated").all()
    x, _ = ShardDataset(shard_refs(tmp_path / "imgs", ["id"]), {}).__getitems__([0, 44])
    expected = generate_uint8(gen, torch.from_numpy(z[[0, 44]]))
    np.testing.assert_array_equal(x.numpy(), expected)


class _MeanRed(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].mean(dim=(1, 2))[:, None] * 10


def test_scores_follow_ids(tmp_path: Path) -> None:
    gen = Generator(GanConfig(latent_dim=8, width=4)).eval()
    z = sample_latents(30, 8, seed=2)
    generate_shards(gen, z, [f"g{i}" for i in range(30)], tmp_path / "imgs",
                    device=torch.device("cpu"), batch_size=8, row_group_size=5, progress=False)
    scores = score_shards_by_name({"red": _MeanRed()}, tmp_path / "imgs", torch.device("cpu"),
                                  batch_size=7)
    red = generate_uint8(gen, torch.from_numpy(z))[..., 0].mean(axis=(1, 2)) / 127.5 - 1
    expected = 1 / (1 + np.exp(-red * 10))
    assert scores["id"].tolist() == [f"g{i}" for i in range(30)]
    np.testing.assert_allclose(scores["red"], expected, rtol=1e-4)
