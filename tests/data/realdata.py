"""Tiny real-dataset fixtures in the exact on-disk layouts, drawn with synthfaces.

Each builder writes JPEG faces whose labels are known (from the synthfaces attribute
table), the label files of the real dataset, and a few broken entries the loaders must
report: a corrupt JPEG, a malformed UTKFace name, a CSV row naming a missing file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facebalance.config import DatasetParams
from facebalance.data import synthfaces

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young").split()
CORRUPT = b"\xff\xd8\xff\xe0 this is not really a JPEG"


def dataset_params(name: str, root: Path, **kw: object) -> DatasetParams:
    """Params of a real-format fixture; target/protected default to blond/male."""
    kw.setdefault("target", "blond")
    kw.setdefault("protected", "male")
    return DatasetParams(name=name, root=str(root), **kw)


def faces(n: int, size: int, seed: int = 0, skewed: bool = False) -> tuple[pd.DataFrame,
                                                                          np.ndarray]:
    """``n`` synthfaces (attribute table, uint8 images) at ``size`` pixels."""
    spec = synthfaces.SplitSpec(n=n, balanced=not skewed)
    table = synthfaces.sample_attributes(spec, seed, "train")
    return table, synthfaces.render(table, size, seed)


def interleave_cells(table: pd.DataFrame, images: np.ndarray) -> tuple[pd.DataFrame,
                                                                        np.ndarray]:
    """Reorder faces so that consecutive rows cycle through the blond x male cells: any
    contiguous split of a few rows then holds both values of each (prepare requires it)."""
    cell = table["blond"].to_numpy() * 2 + table["male"].to_numpy()
    rank = pd.Series(cell).groupby(cell).cumcount().to_numpy()
    order = np.lexsort((cell, rank))
    return table.iloc[order].reset_index(drop=True), images[order]


def save_jpeg(path: Path, image: np.ndarray, size: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(image)
    if size is not None:
        im = im.resize(size, Image.Resampling.BICUBIC)
    im.save(path, quality=92)


def make_celeba(root: Path, n: int = 30, corrupt: int = 6) -> pd.DataFrame:
    """CelebA layout: 178x218 JPEGs, -1/1 attributes, 0/1/2 partition, identities.

    Splits: the first 60% train, next 15% val, the rest test. Image ``corrupt`` (0-based)
    holds broken bytes. Returns the table with ``file``, ``split``, ``blond``, ``male``.
    """
    table, images = interleave_cells(*faces(n, 64, seed=1))
    rng = np.random.default_rng(0)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, f in enumerate(files):
        save_jpeg(root / "img_align_celeba" / f, images[i], (178, 218))
    (root / "img_align_celeba" / files[corrupt]).write_bytes(CORRUPT)
    values = rng.choice([-1, 1], size=(n, len(CELEBA_ATTRS)))
    values[:, CELEBA_ATTRS.index("Blond_Hair")] = 2 * table["blond"].to_numpy() - 1
    values[:, CELEBA_ATTRS.index("Male")] = 2 * table["male"].to_numpy() - 1
    lines = [str(n), " ".join(CELEBA_ATTRS)]
    lines += [f + "  " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values,
                                                                            strict=True)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    n_train, n_val = int(n * 0.6), int(n * 0.15)
    part = np.r_[np.zeros(n_train, int), np.ones(n_val, int), np.full(n - n_train - n_val, 2)]
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{f} {s}\n" for f, s in zip(files, part, strict=True)))
    (root / "identity_CelebA.txt").write_text(
        "".join(f"{f} {100 + i // 3}\n" for i, f in enumerate(files)))
    return pd.DataFrame({"file": files, "split": np.array(["train", "val", "test"])[part],
                         "blond": table["blond"], "male": table["male"]})


def make_utkface(root: Path, n: int = 40) -> list[str]:
    """UTKFace layout: ``UTKFace/age_gender_race_date.jpg.chip.jpg``, plus two malformed names.

    Returns the well-formed file names.
    """
    table, images = faces(n, 64, seed=2)
    rng = np.random.default_rng(1)
    names = []
    for i in range(n):
        age = int(table["age"].iloc[i])
        gender = 1 - int(table["male"].iloc[i])  # UTKFace: 0 = male
        race = int(rng.integers(0, 5))
        name = f"{age}_{gender}_{race}_2017010915{i:07d}.jpg.chip.jpg"
        save_jpeg(root / "UTKFace" / name, images[i], (200, 200))
        names.append(name)
    save_jpeg(root / "UTKFace" / "39_1_20170116174525125.jpg.chip.jpg", images[0])  # no race
    save_jpeg(root / "UTKFace" / "face.jpg", images[1])
    return names


def make_fairface(root: Path, n_train: int = 40, n_val: int = 12) -> pd.DataFrame:
    """FairFace layout: ``train/N.jpg``, ``val/N.jpg`` and the two label CSVs."""
    table, images = faces(n_train + n_val, 64, seed=3)
    rng = np.random.default_rng(2)
    races = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
             "Middle Eastern"]
    ages = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
    rows = []
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        k = i + 1 if split == "train" else i - n_train + 1
        file = f"{split}/{k}.jpg"
        save_jpeg(root / file, images[i], (224, 224))
        rows.append({"file": file, "age": ages[int(rng.integers(0, 9))],
                     "gender": "Male" if table["male"].iloc[i] else "Female",
                     "race": races[int(rng.integers(0, 7))], "service_test": "True",
                     "split": split})
    frame = pd.DataFrame(rows)
    for split in ("train", "val"):
        part = frame[frame["split"] == split].drop(columns="split")
        part.to_csv(root / f"fairface_label_{split}.csv", index=False)
    return frame


def make_lfw(root: Path, simple: bool = False) -> list[str]:
    """LFW layout: ``lfw/Name/Name_000k.jpg`` and ``pairs.txt``.

    10-fold format: header ``10 1``; fold f pairs P{2f} with itself (images 1, 2) and with
    P{2f+1}. Simple format: header ``3``, three matched then three mismatched pairs. One
    more identity, ``Loner``, is in no pair. Returns the pairs file lines.
    """
    _, images = faces(44, 64, seed=4)
    people = [f"Person_{k:02d}" for k in range(20)] + ["Loner"]
    j = 0
    for name in people:
        for num in (1, 2):
            save_jpeg(root / "lfw" / name / f"{name}_{num:04d}.jpg", images[j], (250, 250))
            j += 1
    if simple:
        lines = ["3"] + [f"{people[k]}\t1\t2" for k in range(3)]
        lines += [f"{people[k]}\t1\t{people[k + 10]}\t2" for k in range(3)]
    else:
        lines = ["10\t1"]
        for f in range(10):
            a, b = people[2 * f], people[2 * f + 1]
            lines += [f"{a}\t1\t2", f"{a}\t2\t{b}\t1"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return lines


def make_folder(root: Path, n: int = 48, size: int = 64, broken: bool = True,
                seed: int = 5, split_sizes: tuple[int, int, int] | None = None) -> pd.DataFrame:
    """A folder of JPEGs plus ``labels.csv`` (file, blond as -1/1, male as true/false, age).

    With ``split_sizes`` (train, val, test) the CSV gets a ``split`` column, train is skewed
    like CelebA (synthfaces defaults) and val/test balanced; else ``n`` balanced faces and
    no split column. With ``broken``, CSV line 5 names a missing file and line 10's file is
    corrupt.
    """
    if split_sizes is None:
        table, images = faces(n, size, seed=seed)
        splits = None
    else:
        parts = [faces(k, size, seed=seed + j, skewed=j == 0)
                 for j, k in enumerate(split_sizes)]
        table = pd.concat([t for t, _ in parts], ignore_index=True)
        images = np.concatenate([im for _, im in parts])
        splits = np.repeat(["train", "val", "test"], split_sizes)
    files = [f"img/{i // 100:03d}/face_{i:05d}.jpg" for i in range(len(table))]
    for f, im in zip(files, images, strict=True):
        save_jpeg(root / f, im)
    frame = pd.DataFrame({"file": files,
                          "blond": np.where(table["blond"] == 1, 1, -1),
                          "male": np.where(table["male"] == 1, "true", "false"),
                          "age": table["age"].round(1),
                          "identity": [f"{i}-{x}" for i, x in enumerate(table["identity"])]})
    if splits is not None:
        frame["split"] = splits
    if broken:
        (root / files[3]).unlink()
        (root / files[8]).write_bytes(CORRUPT)
    frame.to_csv(root / "labels.csv", index=False)
    return frame
