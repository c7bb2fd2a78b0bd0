"""Streaming conversion of real datasets into shards: pixels, labels, errors, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facebalance.config import DatasetParams
from facebalance.data.convert import (
    ALPHA_BACKGROUND,
    ConvertOptions,
    ImageRefused,
    MtcnnDetector,
    center_box,
    convert_dataset,
    face_box,
    load_cropped,
    load_face,
    open_confined,
    open_rgb,
)
from facebalance.data.loaders import index_dataset
from facebalance.data.prepare import prepare_dataset
from facebalance.data.shards import decode_image, read_columns
from facebalance.errors import CorruptImageError, FacebalanceError

from .realdata import (
    dataset_params,
    faces,
    make_celeba,
    make_fairface,
    make_folder,
    make_lfw,
    make_utkface,
)


def _params(name: str, root: Path, **kw: object) -> DatasetParams:
    """Fixture params with small row groups and files, so the chunking is exercised."""
    return dataset_params(name, root, row_group_size=8, rows_per_file=16, **kw)


def _images(split_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.concat(pd.read_parquet(f) for f in sorted(split_dir.glob("*.parquet")))
    return frame, np.stack([decode_image(b) for b in frame["image"]])


def test_center_and_face_boxes() -> None:
    assert center_box(178, 218, 128) == (25.0, 45.0, 153.0, 173.0)  # CelebA, like the paper
    assert center_box(178, 218, 0) == (0.0, 20.0, 178.0, 198.0)
    assert center_box(100, 100, 400) == (0.0, 0.0, 100.0, 100.0)
    box = face_box((40, 50, 80, 100), 0.2, 200, 200)  # 40x50 face, 20% margin -> side 60
    assert box == pytest.approx((30.0, 45.0, 90.0, 105.0))
    edge = face_box((0, 0, 30, 30), 0.5, 200, 100)  # pushed inside, not shrunk
    assert edge == pytest.approx((0.0, 0.0, 45.0, 45.0))
    big = face_box((10, 10, 190, 95), 0.5, 200, 100)  # at most the shorter side
    assert big[3] - big[1] == pytest.approx(100) and big[0] >= 0 and big[2] <= 200


def test_load_cropped_matches_a_full_decode(tmp_path: Path) -> None:
    _, images = faces(1, 128)
    path = tmp_path / "a.jpg"
    Image.fromarray(images[0]).resize((178, 218)).save(path, quality=95)
    got = load_cropped(path, 128, 32).astype(float)  # JPEG decoded at 1/4 scale
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").crop((25, 45, 153, 173)).resize(
            (32, 32), Image.Resampling.BILINEAR)).astype(float)
    assert got.shape == (32, 32, 3)
    assert np.abs(got - ref).mean() < 4.0
    png = tmp_path / "a.png"  # no draft for PNG: exact
    Image.fromarray(images[0]).save(png)
    with Image.open(png) as im:
        ref = np.asarray(im.resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(load_cropped(png, 0, 32), ref)


def test_load_cropped_turns_phone_photos_upright(tmp_path: Path) -> None:
    _, images = faces(1, 64)
    wide = Image.fromarray(images[0]).resize((96, 64))  # as the sensor stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    wide.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    wide.save(tmp_path / "plain.png")
    got = load_cropped(tmp_path / "phone.jpg", 0, 32).astype(float)
    upright = Image.open(tmp_path / "plain.png").transpose(Image.Transpose.ROTATE_270)
    assert upright.size == (64, 96)
    ref = np.asarray(upright.resize((32, 32), Image.Resampling.BILINEAR,
                                    box=(0, 16, 64, 80))).astype(float)
    assert np.abs(got - ref).mean() < 4.0
    assert np.abs(got - load_cropped(tmp_path / "plain.png", 0, 32)).mean() > 20


def test_celeba_conversion_skip_counts_the_corrupt_image(tmp_path: Path) -> None:
    truth = make_celeba(tmp_path / "celeba")
    p = _params("celeba", tmp_path / "celeba", target="Blond_Hair", protected="Male",
                on_error="skip")
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert {s: summary[s]["rows"] for s in ("train", "val", "test")} == {
        "train": 17, "val": 4, "test": 8}
    assert summary["errors"] == {"missing": 0, "corrupt": 1, "not_a_file": 0,
                                  "outside_root": 0, "too_large": 0, "no_face": 0}
    assert "000007.jpg (" in summary["error_examples"]["corrupt"][0]
    assert "list_attr_celeba.txt line 9)" in summary["error_examples"]["corrupt"][0]
    frame, images = _images(tmp_path / "out" / "train")
    assert images.shape == (17, 32, 32, 3) and "000007" not in set(frame["id"])
    expect = truth.set_index(truth["file"].str[:6])
    assert frame["Blond_Hair"].tolist() == expect.loc[frame["id"], "blond"].tolist()
    assert frame["Male"].dtype == np.int8 and (frame["source"] == "real").all()
    assert frame["weight"].eq(1.0).all() and frame["split"].eq("train").all()
    assert len(list((tmp_path / "out" / "train").glob("part-*.parquet"))) == 2  # 16 + 1
    cells = summary["train"]["cells"]
    assert sum(cells.values()) == 17 and all(k.startswith("Male=") for k in cells)


def test_celeba_conversion_fail_names_file_and_line(tmp_path: Path) -> None:
    make_celeba(tmp_path / "celeba")
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "keep.txt").write_text("previous output")
    p = _params("celeba", tmp_path / "celeba", target="Blond_Hair", protected="Male")
    with pytest.raises(CorruptImageError, match=r"prepare: corrupt image .*000007.jpg "
                       r"\(.*list_attr_celeba.txt line 9\): OSError: .*"
                       r"set dataset.on_error: skip"):
        prepare_dataset(p, out, seed=0, image_size=32, progress=False)
    assert (out / "train" / "keep.txt").read_text() == "previous output"  # untouched
    assert sorted(f.name for f in tmp_path.iterdir()) == ["celeba", "out"]  # no temp dir
    assert [f.name for f in out.iterdir()] == ["train"]


def test_folder_conversion_reports_missing_and_corrupt(tmp_path: Path) -> None:
    truth = make_folder(tmp_path / "faces")
    p = _params("folder", tmp_path / "faces", on_error="skip")
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert summary["errors"] == {"missing": 1, "corrupt": 1, "not_a_file": 0,
                                 "outside_root": 0, "too_large": 0, "no_face": 0}
    assert "face_00003.jpg (" in summary["error_examples"]["missing"][0]
    assert "labels.csv line 5): file not found" in summary["error_examples"]["missing"][0]
    assert "labels.csv line 10)" in summary["error_examples"]["corrupt"][0]
    written = sum(summary[s]["rows"] for s in ("train", "val", "test"))
    assert written == len(truth) - 2
    frame = read_columns(tmp_path / "out" / "train", ["id", "blond", "male", "age"])
    ref = truth.set_index(truth["file"].str.rsplit(".", n=1).str[0])
    assert frame["blond"].tolist() == (ref.loc[frame["id"], "blond"] == 1).astype(int).tolist()
    assert np.allclose(frame["age"], ref.loc[frame["id"], "age"])
    with pytest.raises(CorruptImageError, match=r"prepare: missing image .*face_00003.jpg "
                       r"\(.*labels.csv line 5\): file not found"):
        prepare_dataset(_params("folder", tmp_path / "faces"), tmp_path / "out2", seed=0,
                        image_size=32, progress=False)


def test_conversion_does_not_depend_on_worker_count(tmp_path: Path) -> None:
    make_folder(tmp_path / "faces", broken=False)
    out = {}
    for workers in (1, 3):
        p = _params("folder", tmp_path / "faces", workers=workers)
        prepare_dataset(p, tmp_path / f"w{workers}", seed=0, image_size=32, progress=False)
        out[workers] = _images(tmp_path / f"w{workers}" / "train")
    assert out[1][0]["id"].tolist() == out[3][0]["id"].tolist()
    assert np.array_equal(out[1][1], out[3][1])


def test_utkface_summary_counts_malformed_names(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=120)  # every split gets both values of each column
    p = _params("utkface", tmp_path / "utk", target="race_white", protected="male")
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert summary["errors"]["malformed_name"] == 2
    assert sum(summary[s]["rows"] for s in ("train", "val", "test")) == 120
    json.dumps(summary)  # what the stage writes to metrics/prepare.json


def test_fairface_conversion(tmp_path: Path) -> None:
    truth = make_fairface(tmp_path / "ff", n_train=120, n_val=24)
    p = _params("fairface", tmp_path / "ff", target="male", protected="race_white")
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert summary["test"]["rows"] == 24 and summary["train"]["rows"] + summary["val"][
        "rows"] == 120
    frame, images = _images(tmp_path / "out" / "test")
    assert images.shape == (24, 32, 32, 3)
    expect = truth.set_index(truth["file"].str.rsplit(".", n=1).str[0])
    assert frame["male"].tolist() == (expect.loc[frame["id"], "gender"] == "Male").tolist()
    assert frame["source_file"].tolist() == expect.loc[frame["id"], "file"].tolist()


def test_lfw_conversion_writes_pairs(tmp_path: Path) -> None:
    make_lfw(tmp_path / "lfw")
    summary = prepare_dataset(_params("lfw", tmp_path / "lfw"), tmp_path / "out", seed=0,
                              image_size=32, progress=False)
    assert summary["pairs"] == {"train": 16, "val": 2, "test": 2}
    assert summary["train"]["rows"] == 34 and summary["train"]["identities"] == 17
    pairs = pd.read_parquet(tmp_path / "out" / "pairs.parquet")
    ids = set(read_columns(tmp_path / "out" / "test", ["id"])["id"])
    assert set(pairs.loc[pairs["split"] == "test", "id_a"]) <= ids


class _FakeDetector:
    """Face box from the image's width: wide images have no face."""

    def __call__(self, images: list[Image.Image]) -> list:
        return [None if im.size[0] > 100 else (10.0, 20.0, 40.0, 60.0) for im in images]


def test_alignment_crops_the_face_and_counts_no_face(tmp_path: Path) -> None:
    _, images = faces(4, 64)
    for i, im in enumerate(images):  # image 2 is wide: the fake detector finds no face
        Image.fromarray(im).resize((120 if i == 2 else 96, 96)).save(tmp_path / f"{i}.png")

    def labels(splits: list[str]) -> None:
        pd.DataFrame({"file": [f"{i}.png" for i in range(len(splits))],
                      "blond": [0, 1, 0, 1][:len(splits)], "male": [1, 0, 0, 1][:len(splits)],
                      "split": splits}).to_csv(tmp_path / "labels.csv", index=False)

    labels(["train", "val", "test"])
    with pytest.raises(FacebalanceError,
                       match=r"no image of the test split of .*labels.csv could be written"):
        convert_dataset(index_dataset(_params("folder", tmp_path)), tmp_path / "out",
                        ConvertOptions(image_size=32), _FakeDetector())
    labels(["train", "val", "train", "test"])
    stats = convert_dataset(index_dataset(_params("folder", tmp_path)), tmp_path / "out",
                            ConvertOptions(image_size=32, align_margin=0.2), _FakeDetector())
    assert stats.errors["no_face"] == 1 and stats.examples["no_face"] == ["2.png"]
    assert stats.written == {"train": 1, "val": 1, "test": 1}
    _, got = _images(tmp_path / "out" / "train")
    with Image.open(tmp_path / "0.png") as im:  # box 30x40 -> square 48 centred on (25, 40)
        ref = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR,
                                                  box=(1.0, 16.0, 49.0, 64.0)))
    assert np.array_equal(got[0], ref)
    # One file through load_face (facebalance verify): the same crop, and no face is an error.
    one = load_face(tmp_path / "0.png", 32, align="mtcnn", margin=0.2, detector=_FakeDetector())
    assert np.array_equal(one, got[0])
    with pytest.raises(FacebalanceError, match=r"2\.png: no face found \(MTCNN, dataset\.align"):
        load_face(tmp_path / "2.png", 32, align="mtcnn", detector=_FakeDetector())


def test_mtcnn_finds_rendered_faces_and_not_a_blank_image() -> None:
    detector = MtcnnDetector()  # weights ship inside the facenet-pytorch wheel
    _, images = faces(16, 128)
    boxes = detector([Image.fromarray(im) for im in images])
    found = [b for b in boxes if b is not None]
    assert found, "MTCNN found no face in 16 rendered faces"
    for x0, y0, x1, y1 in found:
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and x1 - x0 > 20
    assert detector([Image.new("RGB", (128, 128), (128, 128, 128))]) == [None]


def test_prepare_with_mtcnn_alignment(tmp_path: Path) -> None:
    """The real detector end to end: faces it finds are cropped, a blank image is counted."""
    _, images = faces(48, 128, seed=3)
    found = [i for i, b in enumerate(MtcnnDetector()([Image.fromarray(im) for im in images]))
             if b is not None]
    assert len(found) >= 3, "MTCNN should find a few of 48 rendered faces"
    # Two faces per split, labelled (1, 1) and (0, 0): both values of blond and male in each.
    rows = []
    for k in range(6):
        Image.fromarray(images[found[k % len(found)]]).save(tmp_path / f"{k}.png")
        rows.append((f"{k}.png", ("val", "test", "train")[k // 2], 1 - k % 2))
    Image.new("RGB", (128, 128), (120, 120, 120)).save(tmp_path / "blank.png")
    rows.append(("blank.png", "train", 0))
    pd.DataFrame({"file": [f for f, _, _ in rows], "blond": [b for _, _, b in rows],
                  "male": [b for _, _, b in rows], "split": [s for _, s, _ in rows]}).to_csv(
        tmp_path / "labels.csv", index=False)
    p = _params("folder", tmp_path, align="mtcnn", align_margin=0.3)
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert summary["errors"]["no_face"] == 1
    assert summary["error_examples"]["no_face"] == ["blank.png"]
    assert sum(summary[s]["rows"] for s in ("train", "val", "test")) == 6
    _, got = _images(tmp_path / "out" / "train")
    assert got.shape[1:] == (32, 32, 3) and got.std() > 5  # a face crop, not a flat patch


def _labelled_folder(root: Path, files: dict[str, np.ndarray | None], **kw: object
                     ) -> DatasetParams:
    """A folder dataset: ``files`` (None: create nothing) split so that val and test hold
    one (1, 1) and one (0, 0) face each, the rest train."""
    names = list(files)
    for name, image in files.items():
        if image is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / name)
    labels = [1 - k % 2 for k in range(len(names))]
    split = ["val", "val", "test", "test"] + ["train"] * (len(names) - 4)
    pd.DataFrame({"file": names, "blond": labels, "male": labels, "split": split}).to_csv(
        root / "labels.csv", index=False)
    return _params("folder", root, workers=1, **kw)


def _faces_dict(n: int, size: int = 48) -> dict[str, np.ndarray | None]:
    _, images = faces(n, size, seed=9)
    return {f"img/{k}.png": images[k] for k in range(n)}


def test_load_face_gives_the_pixels_prepare_writes(tmp_path: Path) -> None:
    """One file through load_face (facebalance verify) and the same file through prepare:
    identical arrays (centre crop of a portrait JPEG, decoded at a reduced DCT scale)."""
    _, images = faces(6, 96, seed=4)
    files = {f"img/{k}.jpg": images[k][:, 8:88] for k in range(6)}  # 80 wide, 96 high
    p = _labelled_folder(tmp_path, files, crop=64)
    prepare_dataset(p, tmp_path / "out", seed=0, image_size=16, progress=False)
    frame, got = _images(tmp_path / "out" / "train")
    assert len(frame) == 2
    for name, pixels in zip(frame["source_file"], got, strict=True):
        assert np.array_equal(load_face(tmp_path / name, 16, crop=64), pixels)
    with pytest.raises(FacebalanceError, match=r"none\.jpg: no such file$"):
        load_face(tmp_path / "none.jpg", 16)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    with pytest.raises(FacebalanceError, match=r"bad\.jpg: not a readable image \("):
        load_face(tmp_path / "bad.jpg", 16)


def test_a_link_out_of_the_image_folder_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (48, 48), (1, 2, 3)).save(secret)
    root = tmp_path / "faces"
    files = _faces_dict(8)
    files["img/link.png"] = None
    p = _labelled_folder(root, files, on_error="skip")
    (root / "img" / "link.png").symlink_to(secret)
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert summary["errors"]["outside_root"] == 1
    assert f"outside the image folder {root.resolve()}" in (
        summary["error_examples"]["outside_root"][0])
    _, got = _images(tmp_path / "out" / "train")
    assert not (got == (1, 2, 3)).all(axis=-1).any()  # no pixel of the secret image
    with pytest.raises(CorruptImageError, match=r"outside_root image .*link\.png "
                       r"\(.*labels\.csv line 10\): resolves to .*secret\.png"):
        prepare_dataset(_labelled_folder(root, {**files, "img/link.png": None}),
                        tmp_path / "out2", seed=0, image_size=32, progress=False)


def test_a_fifo_named_like_an_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    import signal

    root = tmp_path / "faces"
    files = {**_faces_dict(8), "img/pipe.png": None}
    p = _labelled_folder(root, files, on_error="skip")
    os.mkfifo(root / "img" / "pipe.png")
    signal.alarm(60)  # a regression would block on open(): fail instead of hanging
    try:
        summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    finally:
        signal.alarm(0)
    assert summary["errors"]["not_a_file"] == 1
    assert summary["train"]["rows"] == 4


def test_transparent_pixels_are_composited_over_the_background(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)  # fully transparent black
    rgba[:, 20:] = (200, 10, 10, 255)               # opaque red right half
    rgba[:20, :20] = (255, 255, 255, 128)           # half-transparent white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = load_cropped(tmp_path / "a.png", 0, 40).astype(int)
    assert (got[30, 5] == ALPHA_BACKGROUND).all()  # not black: alpha was not dropped
    assert (got[30, 35] == (200, 10, 10)).all()
    expect = np.round((255 * 128 + np.array(ALPHA_BACKGROUND) * 127) / 255)
    assert np.abs(got[5, 5] - expect).max() <= 1
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png", transparency=0)
    assert load_cropped(tmp_path / "p.png", 0, 40).shape == (40, 40, 3)


def test_small_images_are_kept_counted_and_large_ones_refused(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    files = _faces_dict(8)
    files["img/tiny.png"] = files["img/7.png"][:16, :16]
    files["img/huge.png"] = np.zeros((300, 300, 3), dtype=np.uint8)
    p = _labelled_folder(root, files, on_error="skip", max_pixels=60_000)
    summary = prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert summary["warnings"] == {"small": 1}
    assert "tiny.png: 16x16 crop, upsampled to 32" in summary["error_examples"]["small"][0]
    assert summary["errors"]["too_large"] == 1
    assert summary["train"]["rows"] == 5  # 4 faces + the small one
    with pytest.raises(CorruptImageError, match=r"too_large image .*huge\.png \(.*line 11\): "
                       r"300x300 = 90,000 pixels exceeds dataset\.max_pixels = 60,000"):
        prepare_dataset(_labelled_folder(root, files, max_pixels=60_000), tmp_path / "out2",
                        seed=0, image_size=32, progress=False)


def test_one_class_in_a_split_fails_before_any_image_is_decoded(tmp_path: Path) -> None:
    make_folder(tmp_path / "faces", split_sizes=(40, 8, 8), broken=True)
    frame = pd.read_csv(tmp_path / "faces" / "labels.csv")
    frame.loc[frame["split"] == "test", "blond"] = -1  # no blond face in test
    frame.to_csv(tmp_path / "faces" / "labels.csv", index=False)
    p = _params("folder", tmp_path / "faces")  # on_error: fail would stop at a corrupt image
    with pytest.raises(FacebalanceError, match=r"prepare: the test split of .*labels\.csv has "
                       r"a single dataset\.target value \(blond=0: 8\); every split needs "
                       r"at least two values of blond"):
        prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert not (tmp_path / "out").exists()


def test_one_group_in_synthfaces_train_fails_before_rendering(tmp_path: Path) -> None:
    p = DatasetParams(n_train=64, n_val=16, n_test=16, p_protected=0.0)
    with pytest.raises(FacebalanceError, match=r"the train split of synthfaces \(dataset\.p_\*\)"
                       r" has a single dataset\.protected value \(male=0: 64\)"):
        prepare_dataset(p, tmp_path / "out", seed=0, image_size=32, progress=False)


def test_decode_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """kill -9 of the converting process must not leave its decode workers running."""
    script = tmp_path / "decoder.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from facebalance.data.convert import ChunkDecoder, DecodeJob\n"
        "with ChunkDecoder(2) as d:\n"
        "    jobs = [DecodeJob([], Path('.'), 0, 32, False) for _ in range(4)]\n"
        "    list(d.map(iter(jobs)))\n"
        "    print(' '.join(str(p) for p in d.pool._processes), flush=True)\n"
        "    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(_running(p) for p in workers)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(p) for p in workers)


def _running(pid: int) -> bool:
    """A live process (a zombie waiting to be reaped has finished running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_transparent_photo_is_still_turned_upright(tmp_path: Path) -> None:
    rgba = np.zeros((20, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :20] = (250, 0, 0, 255)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(rgba, "RGBA").save(tmp_path / "phone.png", exif=exif.tobytes())
    got = open_rgb(tmp_path / "phone.png")
    assert got.size == (20, 40)  # portrait, as shown on the phone
    assert np.asarray(got)[0, 10, 0] == 250  # the red half is on top


def test_open_confined_reads_inside_and_refuses_links_out(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "ok.png")
    (tmp_path / "out.png").write_bytes((root / "ok.png").read_bytes())
    with open_confined(root / "ok.png", root) as fh:
        assert fh.read(4) == b"\x89PNG"
    (root / "link.png").symlink_to(tmp_path / "out.png")
    with pytest.raises(ImageRefused, match="outside the image folder"):
        open_confined(root / "link.png", root)
