"""Per-group galleries of a model's most confident mistakes: look, not only read.

A number saying that one group is treated worse sends a person to the faces. The gallery
puts them side by side: one row per group, and in each row the test faces the model gets
most confidently wrong, ``k`` per kind of mistake:

- binary: false negatives (true 1, lowest scores first) beside false positives (true 0,
  highest scores first), at the decision threshold;
- multiclass: wrong classes, by the probability of the (wrong) predicted class when class
  probabilities are given, else in row order;
- regression: the largest over- and under-estimates (prediction - label).

:func:`pick_mistakes` chooses the rows from arrays alone, so a caller decodes only the
faces shown (:func:`images_from_files`, :func:`images_from_shards`);
:func:`draw_gallery` draws them; :func:`mistakes_gallery` does both for a caller that
already holds every image (``evaluate``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facebalance.data.shards import atomic_write_bytes, decode_image, open_parquet, shard_files
from facebalance.errors import CorruptImageError, FacebalanceError, first_line

#: Task kinds a gallery is drawn for.
GALLERY_KINDS = ("binary", "multiclass", "regression")
#: Faces per kind of mistake and group.
DEFAULT_PER_KIND = 6
#: Longest side a face is drawn at (a large photo is shrunk on loading).
MAX_SIDE = 128

ERR_KIND = "gallery: kind {kind!r} is invalid; valid values: binary, multiclass, regression"
ERR_LENGTHS = "gallery: {what} has {n} rows, the labels have {m}; one per test row is expected"
ERR_IMAGE_FILE = "gallery: cannot read the image of {where}: {path}: {reason}"
ERR_NO_SHARD_ID = ("gallery: id {id!r} of {where} is not in the shards {path}; --shards "
                   "must hold the predictions' test images under the same ids")


@dataclass
class Picks:
    """The rows a gallery shows.

    Attributes
    ----------
    panels
        The kinds of mistake, in column order (``false negatives``, ``false positives``).
    rows
        Per group code, per panel: the row indices shown, most confident mistake first.
    counts
        Per group code, per panel: how many such mistakes the group has in all.
    captions
        Per shown row: a short text under its face (score, classes, values).
    """

    panels: tuple[str, ...]
    rows: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    captions: dict[int, str] = field(default_factory=dict)

    def shown(self) -> np.ndarray:
        """Every row shown, sorted and once each (the rows to decode)."""
        parts = [r for per in self.rows.values() for r in per.values()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _check_lengths(y_true: np.ndarray, **arrays: np.ndarray | None) -> None:
    for what, a in arrays.items():
        if a is not None and len(a) != len(y_true):
            raise FacebalanceError(ERR_LENGTHS.format(what=what, n=len(a), m=len(y_true)))


def pick_mistakes(y_true: np.ndarray, groups: np.ndarray, *, kind: str = "binary",
                  scores: np.ndarray | None = None, threshold: float | None = None,
                  y_pred: np.ndarray | None = None, k: int = DEFAULT_PER_KIND,
                  class_names: Sequence[str] = ()) -> Picks:
    """The most confident mistakes of each group.

    Parameters
    ----------
    y_true
        True labels (0/1, class numbers or values).
    groups
        Group code of each row (``-1``: unknown, a group of its own).
    kind
        ``binary``, ``multiclass`` or ``regression``.
    scores
        Binary: the positive-class probability of each row. Multiclass: optional ``(n, C)``
        class probabilities (the confidence of the predicted class orders the mistakes).
    threshold
        Binary: predictions are ``scores >= threshold`` (default 0.5 unless ``y_pred``).
    y_pred
        Predicted labels, classes or values (binary: instead of a threshold).
    k
        Faces per kind of mistake and group.
    class_names
        Multiclass: the name of each class number, for the captions.
    """
    if kind not in GALLERY_KINDS:
        raise FacebalanceError(ERR_KIND.format(kind=kind))
    y_true, groups = np.asarray(y_true), np.asarray(groups, dtype=np.int64)
    _check_lengths(y_true, groups=groups, scores=scores, y_pred=y_pred)
    names = list(class_names)

    def cname(c: object) -> str:
        return names[int(c)] if names and 0 <= int(c) < len(names) else str(c)

    if kind == "binary":
        s = np.asarray(scores if scores is not None else y_pred, dtype=np.float64)
        pred = (np.asarray(y_pred) if y_pred is not None and threshold is None
                else s >= (0.5 if threshold is None else threshold)).astype(np.int64)
        # Confidence in the wrong answer: a missed positive scored 0.02 is worse than 0.4.
        panels = {"false negatives": ((y_true == 1) & (pred == 0), s),
                  "false positives": ((y_true == 0) & (pred == 1), -s)}
        captions = [f"{v:.2f}" for v in s]
    elif kind == "multiclass":
        pred = np.asarray(y_pred) if y_pred is not None else np.asarray(scores).argmax(axis=1)
        conf = (np.take_along_axis(np.asarray(scores), pred[:, None].astype(np.int64),
                                   axis=1)[:, 0] if scores is not None
                else np.zeros(len(y_true)))
        panels = {"wrong class": (pred != y_true, -conf)}
        captions = [f"{cname(t)}→{cname(p)}" + (f" {c:.2f}" if scores is not None else "")
                    for t, p, c in zip(y_true, pred, conf, strict=True)]
    else:
        err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
        panels = {"over-estimates": (err > 0, -err), "under-estimates": (err < 0, err)}
        captions = [f"{t:g}→{p:.3g}" for t, p in zip(y_true, y_pred, strict=True)]
    picks = Picks(panels=tuple(panels))
    for g in sorted(set(groups.tolist()), key=lambda c: (c < 0, c)):
        in_group = groups == g
        picks.rows[g], picks.counts[g] = {}, {}
        for panel, (wrong, order_key) in panels.items():
            idx = np.flatnonzero(wrong & in_group)
            # Stable: ties keep row order, so the gallery is the same on every run.
            chosen = idx[np.argsort(order_key[idx], kind="stable")[:k]]
            picks.rows[g][panel] = chosen
            picks.counts[g][panel] = len(idx)
            picks.captions.update({int(i): captions[i] for i in chosen})
    return picks


def draw_gallery(picks: Picks, images: Mapping[int, np.ndarray] | np.ndarray,
                 group_names: Mapping[int, str] | Sequence[str], *, title: str = "",
                 k: int = DEFAULT_PER_KIND) -> bytes:
    """PNG bytes of the gallery: one row per group, ``k`` faces per panel.

    Parameters
    ----------
    picks
        :func:`pick_mistakes`'s rows.
    images
        The face of each shown row: a mapping ``row -> (H, W, 3) uint8`` or an array of
        every row's image.
    group_names
        Name of each group code (``-1`` is ``unknown`` unless named).
    title
        The figure's title.
    k
        Faces per panel (the columns of each panel).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def gname(g: int) -> str:
        if isinstance(group_names, Mapping):
            return str(group_names.get(g, "unknown"))
        return str(group_names[g]) if 0 <= g < len(group_names) else "unknown"

    groups = list(picks.rows)
    n_panels = len(picks.panels)
    cols = n_panels * k + (n_panels - 1)  # a blank column between panels
    fig, axes = plt.subplots(max(len(groups), 1), cols, squeeze=False,
                             figsize=(0.95 * cols + 1.2, 1.25 * max(len(groups), 1) + 0.9))
    for ax in axes.ravel():
        ax.set_axis_off()
    for r, g in enumerate(groups):
        for p, panel in enumerate(picks.panels):
            start = p * (k + 1)
            rows = picks.rows[g][panel]
            for j in range(k):
                ax = axes[r, start + j]
                if j < len(rows):
                    ax.imshow(np.asarray(images[int(rows[j])]), interpolation="nearest")
                    ax.set_title(picks.captions[int(rows[j])], fontsize=7, pad=2)
                elif j == 0:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=8,
                            color="gray", transform=ax.transAxes)
            # Which group and how many of its mistakes are shown, left of each panel.
            axes[r, start].text(-0.08, 0.5, f"{gname(g)}\n{len(rows)} of "
                                f"{picks.counts[g][panel]}", transform=axes[r, start].transAxes,
                                ha="right", va="center", fontsize=8)
    for p, panel in enumerate(picks.panels):
        left = axes[0, p * (k + 1)].get_position().x0
        right = axes[0, p * (k + 1) + k - 1].get_position().x1
        fig.text((left + right) / 2, 0.995, panel, ha="center", va="top", fontsize=10,
                 weight="bold")
    if title:
        fig.suptitle(title, fontsize=10, y=0.02, va="bottom")
    fig.subplots_adjust(left=0.09, right=0.99, top=0.86, bottom=0.1, wspace=0.08,
                        hspace=0.45)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def mistakes_gallery(images: np.ndarray, y_true: np.ndarray, groups: np.ndarray,
                     group_names: Mapping[int, str] | Sequence[str], *,
                     kind: str = "binary", scores: np.ndarray | None = None,
                     threshold: float | None = None, y_pred: np.ndarray | None = None,
                     k: int = DEFAULT_PER_KIND, class_names: Sequence[str] = (),
                     title: str = "", out: str | Path | None = None) -> bytes:
    """:func:`pick_mistakes` then :func:`draw_gallery` on ``(N, H, W, 3)`` uint8 ``images``
    (one per row); the PNG bytes, also written atomically to ``out`` when given."""
    if len(images) != len(y_true):
        raise FacebalanceError(ERR_LENGTHS.format(what="images", n=len(images),
                                                  m=len(y_true)))
    picks = pick_mistakes(y_true, groups, kind=kind, scores=scores, threshold=threshold,
                          y_pred=y_pred, k=k, class_names=class_names)
    png = draw_gallery(picks, images, group_names, title=title, k=k)
    if out is not None:
        atomic_write_bytes(out, png)
    return png


# ------------------------------------------------------------------------- image sources


def load_image_file(path: str | Path, where: str = "?", max_side: int = MAX_SIDE
                    ) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8, its longest side shrunk to ``max_side``."""
    from PIL import Image

    from facebalance.data.shards import to_rgb

    try:
        with Image.open(path) as im:
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            im = to_rgb(im)
            im.thumbnail((max_side, max_side))
            return np.asarray(im)
    except Exception as err:  # PIL raises several unrelated types for bad data
        raise FacebalanceError(ERR_IMAGE_FILE.format(where=where, path=path,
                                                     reason=first_line(err))) from None


def images_from_files(paths: Mapping[int, str | Path], where: Mapping[int, str] | None = None
                      ) -> dict[int, np.ndarray]:
    """``{row: image}`` of the given rows' image files (only those are read)."""
    return {r: load_image_file(p, (where or {}).get(r, f"row {r}")) for r, p in paths.items()}


def images_from_shards(path: str | Path, ids: Mapping[int, str],
                       where: Mapping[int, str] | None = None) -> dict[int, np.ndarray]:
    """``{row: image}`` of the given rows, found by id in a shard folder; only the row
    groups holding them are read, only their images decoded."""
    from facebalance.data.shards import read_columns

    refs = read_columns(path, ["id"])
    position = dict(zip(refs["id"].astype(str), range(len(refs)), strict=True))
    files = shard_files(path)
    starts: dict[int, np.ndarray] = {}  # each file's first row of every row group
    wanted: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (file, row group) -> rows
    for row, image_id in ids.items():
        i = position.get(str(image_id))
        if i is None:
            raise FacebalanceError(ERR_NO_SHARD_ID.format(
                id=image_id, where=(where or {}).get(row, f"row {row}"), path=path))
        f, r = int(refs["_file"].iloc[i]), int(refs["_row"].iloc[i])
        if f not in starts:
            md = open_parquet(files[f]).metadata
            starts[f] = np.cumsum([0] + [md.row_group(j).num_rows
                                         for j in range(md.num_row_groups)])
        rg = int(np.searchsorted(starts[f], r, side="right") - 1)
        wanted.setdefault((f, rg), []).append((row, r - int(starts[f][rg])))
    out: dict[int, np.ndarray] = {}
    for (f, rg), rows in wanted.items():
        table = open_parquet(files[f]).read_row_group(rg, columns=["id", "image"])
        images = table.column("image")
        for row, offset in rows:
            try:
                out[row] = decode_image(images[offset].as_py(), str(ids[row]), files[f])
            except CorruptImageError as err:
                raise FacebalanceError(f"gallery: {err}") from None
    return out
