import errno
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facebalance.data.shards import (
    ShardWriter,
    atomic_directory,
    atomic_write_bytes,
    clean_stale_temps,
    decode_batch,
    decode_image,
    encode_png,
    encode_png_batch,
    iter_batches,
    read_columns,
    read_parquet,
    shard_files,
    write_table_atomic,
)
from facebalance.errors import CorruptImageError, FacebalanceError


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return pd.DataFrame({"id": [f"x{i}" for i in range(start, start + n)],
                         "image": [encode_png(im) for im in images],
                         "label": np.arange(start, start + n) % 2})


def test_png_round_trip() -> None:
    im = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_png(im)), im)


@pytest.mark.parametrize("level", [0, 6])
def test_batch_png_encoder_writes_valid_pngs(level: int) -> None:
    from PIL import Image

    ims = np.random.default_rng(1).integers(0, 256, (4, 9, 6, 3), dtype=np.uint8)
    for blob, im in zip(encode_png_batch(ims, level), ims, strict=True):
        with Image.open(io.BytesIO(blob)) as decoded:
            assert decoded.format == "PNG" and decoded.mode == "RGB"
            decoded.load()  # verifies the zlib stream and CRCs
        np.testing.assert_array_equal(decode_image(blob), im)


def test_writer_splits_files_and_row_groups(tmp_path: Path) -> None:
    out = tmp_path / "shards"
    with ShardWriter(out, rows_per_file=100, row_group_size=30) as w:
        for start in range(0, 250, 70):  # uneven batches
            w.write(_frame(min(70, 250 - start), start))
    files = shard_files(out)
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet",
                                       "part-00002.parquet"]
    sizes = [[pq.ParquetFile(f).metadata.row_group(i).num_rows
              for i in range(pq.ParquetFile(f).metadata.num_row_groups)] for f in files]
    assert sizes == [[30, 30, 30, 10], [30, 30, 30, 10], [30, 20]]
    df = read_columns(out, ["id", "label"])
    assert df["id"].tolist() == [f"x{i}" for i in range(250)]
    assert df["_file"].tolist() == [0] * 100 + [1] * 100 + [2] * 50
    assert df["_row"].tolist()[98:102] == [98, 99, 0, 1]
    streamed = pd.concat(iter_batches(out, ["id"], batch_rows=40))
    assert streamed["id"].tolist() == df["id"].tolist()
    assert not list(tmp_path.glob(".shards*"))  # no temporary left behind


def test_interrupted_write_leaves_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "shards"
    with ShardWriter(out, row_group_size=10) as w:
        w.write(_frame(20))
    with pytest.raises(RuntimeError), ShardWriter(out, row_group_size=10) as w:
        w.write(_frame(50, 100))
        raise RuntimeError("killed")
    assert read_columns(out, ["id"])["id"].tolist() == [f"x{i}" for i in range(20)]
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]


def test_mismatched_columns_fail(tmp_path: Path) -> None:
    with pytest.raises(FacebalanceError, match="do not match the first batch"), \
            ShardWriter(tmp_path / "s", row_group_size=5) as w:
        w.write(_frame(3))
        w.write(pd.DataFrame({"other": [1.5]}))
    assert not (tmp_path / "s").exists()


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    frame = _frame(4)
    frame.loc[2, "image"] = b"\x89PNG\r\n\x1a\nbroken"
    with pytest.raises(CorruptImageError, match=r"corrupt image id='x2' in shard\.parquet"):
        decode_batch(frame, "shard.parquet")
    images, keep = decode_batch(frame, "shard.parquet", on_error="skip")
    assert images.shape == (3, 8, 8, 3) and keep.tolist() == [True, True, False, True]


def test_missing_paths_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FacebalanceError, match="does not exist; run the stage"):
        shard_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacebalanceError, match=r"holds no \.parquet files"):
        shard_files(tmp_path / "empty")
    write_table_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    with pytest.raises(FacebalanceError, match=r"has no column\(s\) \['b'\]"):
        read_columns(tmp_path / "t.parquet", ["b"])


def test_atomic_table_write_replaces(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_table_atomic(pd.DataFrame({"a": [1, 2]}), path)
    write_table_atomic(pd.DataFrame({"a": [3]}), path)
    assert pd.read_parquet(path)["a"].tolist() == [3]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_a_truncated_shard_is_named_in_one_line(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "split", rows_per_file=5, row_group_size=5) as w:
        w.write(_frame(10))
    bad = tmp_path / "split" / "part-00001.parquet"
    bad.write_bytes(bad.read_bytes()[:200])
    pattern = rf"{re.escape(str(bad))} is not a readable Parquet file \(.*\); it may be " \
              r"truncated"
    with pytest.raises(FacebalanceError, match=pattern):
        read_columns(tmp_path / "split")
    with pytest.raises(FacebalanceError, match=pattern):
        list(iter_batches(tmp_path / "split"))
    with pytest.raises(FacebalanceError, match=pattern):
        read_parquet(bad)


def test_stale_temp_siblings_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".prepared.tmp-{dead}-0123abcd"
    old = tmp_path / ".prepared.old-89abcdef"  # an older version's name, without a pid
    live = tmp_path / f".prepared.tmp-{os.getpid()}-0123abcd"  # a concurrent writer
    other = tmp_path / f".prepared2.tmp-{dead}-0123abcd"  # another output's
    for d in (stale, old, live, other):
        (d / "train").mkdir(parents=True)
    with ShardWriter(tmp_path / "prepared") as w:
        w.write(_frame(3))
    assert not stale.exists() and not old.exists()
    assert live.exists() and other.exists()
    (tmp_path / f".m.json.tmp-{dead}-0123abcd").write_text("{")
    atomic_write_bytes(tmp_path / "m.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".m")) == []


def test_a_write_error_without_a_file_name_gets_the_output_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk fails in write() with an OSError that names no file."""
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "m.json", b"{}")
    assert info.value.filename == str(tmp_path / "m.json")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_a_kill_between_the_two_renames_restores_the_previous_output(tmp_path: Path) -> None:
    """Killed after out was renamed aside and before tmp took its place: the next writer
    puts the previous output back instead of deleting its only copy."""
    with ShardWriter(tmp_path / "split") as w:
        w.write(_frame(3))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    aside = tmp_path / f".split.old-{dead}-0123abcd"
    os.replace(tmp_path / "split", aside)
    clean_stale_temps(tmp_path / "split")
    assert not aside.exists()
    assert read_columns(tmp_path / "split", ["id"])["id"].tolist() == ["x0", "x1", "x2"]


def test_an_output_folder_holding_other_files_is_refused_not_deleted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "a.json").write_text("1")
        (tmp / "train").mkdir()
        (tmp / "train" / "part-00000.parquet").write_text("x")
    (out / "train" / "part-00001.parquet").write_text("y")  # an older, larger output's part
    (out / "embedder.pt").write_text("z")  # written by another configuration of the stage
    with atomic_directory(out) as tmp:  # its own earlier output: replaced
        (tmp / "a.json").write_text("2")
    assert sorted(p.name for p in out.rglob("*")) == ["a.json"]
    (out / "my_notes.txt").write_text("keep me")
    (out / "IMG_0001.png").write_text("a photo of the user's")
    with pytest.raises(FacebalanceError, match=rf"^{out} holds files this stage did not write "
                                               r"\(IMG_0001.png, my_notes.txt\); .*choose "
                                               r"another --out$"):
        with atomic_directory(out) as tmp:
            (tmp / "a.json").write_text("3")
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert (out / "a.json").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left
    with pytest.raises(FacebalanceError, match=r"holds files this stage did not write"):
        with ShardWriter(out, 10, 5) as writer:
            writer.write(pd.DataFrame({"id": ["a"]}))
    assert (out / "my_notes.txt").exists()
