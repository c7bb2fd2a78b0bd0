"""dlib's descriptor, its face detector and its worker processes (needs the [dlib] extra,
which make test installs)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance.data.datasets import ShardDataset
from facebalance.data.embeddings import embedding_rows
from facebalance.models.dlib_embedder import DlibEmbedder, NoFaceError
from facebalance.models.embedder import embed_dataset


def test_dlib_descriptor_embeds_aligned_chips() -> None:
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")
    from tests.data.realdata import faces

    _, images = faces(4, 64, seed=1)
    x = torch.from_numpy(images)
    out = DlibEmbedder("landmarks").embed(x)
    assert out.shape == (4, 128) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    plain = DlibEmbedder("none").embed(x)
    assert not np.allclose(out, plain)  # the landmarks moved the chips
    np.testing.assert_allclose(DlibEmbedder("landmarks").embed(x), out)  # deterministic


def test_dlib_detector_counts_or_refuses_a_face_it_cannot_find() -> None:
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")

    blank = torch.full((1, 64, 64, 3), 128, dtype=torch.uint8)
    emb = DlibEmbedder("detect")
    assert emb.embed(blank).shape == (1, 128) and emb.no_face == 1  # whole crop used
    with pytest.raises(NoFaceError):
        emb.embed(blank, strict=True)


def test_dlib_in_worker_processes_equals_one_process(tiny_prepared: Path) -> None:
    """The stage's parallel dlib path: same vectors, same order, same no-face count."""
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")
    # 24 images: three batches of 8, each cut into one chunk per process (6 chunks: more than
    # the 2 per process kept in flight), then one batch of 24 cut in two.
    rows = embedding_rows(tiny_prepared, need_identity=False).iloc[:24]
    one, many = DlibEmbedder("detect"), DlibEmbedder("detect")
    serial = embed_dataset(one, ShardDataset(rows, {}), batch_size=8, progress=False)
    parallel = embed_dataset(many, ShardDataset(rows, {}), batch_size=8, workers=2,
                             progress=False)
    np.testing.assert_allclose(parallel, serial, atol=1e-6)
    assert many.no_face == one.no_face > 0  # 32 px synthfaces: dlib's HOG finds few faces
    # One batch of 24 images is cut into one chunk per process, put back in order: the
    # same bits (a face's descriptor does not depend on the batch it is computed in).
    whole = DlibEmbedder("detect")
    np.testing.assert_array_equal(embed_dataset(whole, ShardDataset(rows, {}), batch_size=24,
                                                workers=2, progress=False), serial)
    assert whole.no_face == one.no_face


def test_embed_shows_progress_with_a_rate(tiny_prepared: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")
    rows = embedding_rows(tiny_prepared, need_identity=False).iloc[:16]
    embed_dataset(DlibEmbedder("none"), ShardDataset(rows, {}), batch_size=8)
    err = capsys.readouterr().err
    assert "embed: 100%" in err and "16/16" in err and "img/s" in err
