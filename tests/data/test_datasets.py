from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.data.datasets import BlockShuffleSampler, ShardDataset, make_loader
from facebalance.data.shards import ShardWriter, encode_png, read_columns, shard_refs


def test_preloaded_and_streamed_images_match(tiny_prepared: Path) -> None:
    refs = shard_refs(tiny_prepared / "train", ["id", "blond"])
    # Repeated rows (as oversampling makes) and rows from two shard directories.
    val = shard_refs(tiny_prepared / "val", ["id", "blond"])
    refs = refs.iloc[np.r_[0:40, 5:15, 300:320]]
    refs = pd.concat([refs, val.iloc[:10]], ignore_index=True)
    arrays = {"label": refs["blond"].to_numpy()}
    pre = ShardDataset(refs, arrays)
    stream = ShardDataset(refs, arrays, cache_mb=0, group_cache=2)
    assert pre.images is not None and pre.images.shape[0] == 80 - 10  # repeats decoded once
    assert stream.images is None
    idx = list(np.random.default_rng(0).permutation(len(refs)))
    x1, r1 = pre.__getitems__(idx)
    x2, _ = stream.__getitems__(idx)
    assert x1.shape == (80, 32, 32, 3)
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(r1["label"], refs["blond"].to_numpy()[idx])


def test_block_shuffle_covers_every_row_once_per_epoch() -> None:
    keys = np.repeat(np.arange(10), 7)
    sampler = BlockShuffleSampler(keys, batch_size=8, seed=1, window=2)
    seen = np.concatenate([np.array(b) for b in sampler])
    assert sorted(seen.tolist()) == list(range(70))
    # Within a window of 2 row groups: every 14 consecutive rows span at most 2 blocks.
    assert all(len(set(keys[seen[i:i + 14]])) <= 2 for i in range(0, 70, 14))
    sampler.set_epoch(1)
    other = np.concatenate([np.array(b) for b in sampler])
    assert other.tolist() != seen.tolist()
    assert len(sampler) == 9


def test_sampler_budget_draws_different_rows_each_epoch() -> None:
    sampler = BlockShuffleSampler(np.zeros(100), batch_size=16, seed=0, window=0,
                                  num_samples=30)
    first = np.concatenate([np.array(b) for b in sampler])
    sampler.set_epoch(1)
    second = np.concatenate([np.array(b) for b in sampler])
    assert len(first) == 30 and len(set(first)) == 30 and len(sampler) == 2
    assert set(first) != set(second)


def test_unshuffled_loader_keeps_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (25, 4, 4, 3), dtype=np.uint8)
    with ShardWriter(tmp_path / "s", rows_per_file=10, row_group_size=4) as w:
        w.write(pd.DataFrame({"id": [str(i) for i in range(25)],
                              "image": [encode_png(im) for im in images]}))
    refs = read_columns(tmp_path / "s", ["id"]).assign(path=str(tmp_path / "s"))
    ds = ShardDataset(refs, {}, cache_mb=0)
    loader, _ = make_loader(ds, 6, shuffle=False)
    got = np.concatenate([x.numpy() for x, _ in loader])
    np.testing.assert_array_equal(got, images)


def test_refs_must_have_reference_columns() -> None:
    with pytest.raises(ValueError, match="refs lack columns"):
        ShardDataset(pd.DataFrame({"id": ["a"]}), {})


def test_ranks_take_their_rows_of_the_same_global_batches() -> None:
    keys = np.repeat(np.arange(10), 7)  # 70 rows in 10 row groups
    one = BlockShuffleSampler(keys, 16, seed=3, window=2)
    ranks = [BlockShuffleSampler(keys, 16, seed=3, window=2, rank=r, world=3) for r in range(3)]
    for s in (one, *ranks):
        s.set_epoch(1)
    for batch, *parts in zip(one, *ranks, strict=True):
        assert sorted(i for part in parts for i in part) == sorted(batch)
        assert parts[1] == batch[1::3]
    assert one.global_sizes() == [16, 16, 16, 16, 6] and len(ranks[0]) == 5
    # A last batch with fewer rows than ranks is left out: a rank would get none.
    assert BlockShuffleSampler(keys, 23, seed=0, world=2).global_sizes() == [23, 23, 23]
    assert BlockShuffleSampler(keys, 23, seed=0, world=1).global_sizes() == [23, 23, 23, 1]
