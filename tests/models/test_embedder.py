from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance.config import EmbedParams
from facebalance.data.datasets import ShardDataset
from facebalance.data.embeddings import (
    embedding_rows,
    embeddings_table,
    holdout_identities,
    pair_image_rows,
    read_embeddings,
    write_embeddings,
)
from facebalance.errors import FacebalanceError
from facebalance.models.dlib_embedder import DlibEmbedder
from facebalance.models.embedder import (
    EmbedderConfig,
    TorchEmbedder,
    embed_dataset,
    facenet_weights_file,
    load_embedder,
    named_facenet,
    save_embedder,
    train_embedder,
)

FAST = EmbedParams(width=16, epochs=1, batch_size=64)


def test_trained_embedder_gives_unit_vectors_and_round_trips(tiny_prepared: Path,
                                                             tmp_path: Path) -> None:
    rows = embedding_rows(tiny_prepared, need_identity=True)
    assert set(rows["split"]) == {"train", "val", "test"}
    rows["head_fit"] = holdout_identities(rows, 0.25, seed=0)
    fit = rows[(rows["split"] == "train") & ~rows["head_fit"]]
    net, cfg, history = train_embedder(fit, FAST, image_size=32, seed=0,
                                       device=torch.device("cpu"))
    assert cfg.dim == 64 and len(history) == 1
    embedder = TorchEmbedder(net, cfg.dim, torch.device("cpu"))
    vectors = embed_dataset(embedder, ShardDataset(rows, {}), batch_size=100)
    assert vectors.shape == (len(rows), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    save_embedder(tmp_path / "embed", cfg, net, {"note": "test"})
    again, cfg2 = load_embedder(tmp_path / "embed")
    assert cfg2 == cfg
    np.testing.assert_allclose(embed_dataset(again, ShardDataset(rows.iloc[:50], {})),
                               vectors[:50], atol=1e-6)
    rows["head_fit"] = rows["head_fit"].astype(bool)
    write_embeddings(tmp_path / "e.parquet", embeddings_table(rows, vectors))
    frame, back = read_embeddings(tmp_path / "e.parquet")
    np.testing.assert_array_equal(back, vectors)
    assert frame.columns.tolist() == ["id", "split", "identity", "head_fit"]


def test_holdout_keeps_whole_identities_out_of_training(tiny_prepared: Path) -> None:
    rows = embedding_rows(tiny_prepared, need_identity=True)
    held = holdout_identities(rows, 0.25, seed=3)
    train = rows["split"] == "train"
    assert held[~train].all()  # val/test are never trained on
    by_identity = rows[train].assign(h=held[train]).groupby("identity")["h"].nunique()
    assert (by_identity == 1).all()  # an identity is held out with all its images
    share = rows[train & held]["identity"].nunique() / rows[train]["identity"].nunique()
    assert share == pytest.approx(0.25, abs=0.01)


def test_named_weights_missing_is_one_line_naming_the_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(FacebalanceError) as err:
        facenet_weights_file("vggface2")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "th" / "checkpoints" / "20180402-114759-vggface2.pt") in msg
    assert "releases/download/v2.2.9/20180402-114759-vggface2.pt" in msg


def test_facenet_weights_load_from_the_cache_and_from_a_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=5).eval()
    state = model.state_dict()  # with its logits layer, as facenet-pytorch's files are
    cache = tmp_path / "th" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "20180402-114759-vggface2.pt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    x = torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8)
    model.classify = False
    with torch.no_grad():
        ref = model(torch.nn.functional.interpolate(
            x.permute(0, 3, 1, 2).float() / 127.5 - 1, size=(160, 160), mode="bilinear",
            align_corners=False)).numpy()
    for weights in ("vggface2", str(cache / "20180402-114759-vggface2.pt")):
        net, cfg = named_facenet(EmbedParams(weights=weights), image_size=32)
        out = TorchEmbedder(net, cfg.dim, torch.device("cpu")).embed(x)
        assert out.shape == (2, 512)
        np.testing.assert_allclose(out, ref, atol=1e-5)
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(2)}, bad)
    with pytest.raises(FacebalanceError, match="do not fit InceptionResnetV1"):
        named_facenet(EmbedParams(weights=str(bad)), image_size=32)


def test_a_checkpoint_holding_code_is_refused(tmp_path: Path) -> None:
    import pickle

    cfg = EmbedderConfig(width=8, dim=32)
    save_embedder(tmp_path, cfg, None, {})
    (tmp_path / "embedder.pt").write_bytes(pickle.dumps(print))
    with pytest.raises(FacebalanceError, match="must not be loaded"):
        load_embedder(tmp_path)


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


def test_inception_resnet_v1_trains_as_the_embedder(tiny_prepared: Path) -> None:
    rows = embedding_rows(tiny_prepared, need_identity=True)
    fit = rows[rows["split"] == "train"].iloc[:24]
    params = EmbedParams(backbone="inception_resnet_v1", input_size=96, epochs=1,
                         batch_size=12, augment=False)
    net, cfg, history = train_embedder(fit, params, image_size=32, seed=0,
                                       device=torch.device("cpu"))
    assert cfg.dim == 512 and cfg.backbone == "inception_resnet_v1" and len(history) == 1
    assert not hasattr(net.net, "logits")  # the identity logits are not part of it
    out = TorchEmbedder(net, cfg.dim, torch.device("cpu")).embed(
        torch.zeros((2, 32, 32, 3), dtype=torch.uint8))
    assert out.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_dlib_detector_counts_or_refuses_a_face_it_cannot_find() -> None:
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")
    from facebalance.models.dlib_embedder import NoFaceError

    blank = torch.full((1, 64, 64, 3), 128, dtype=torch.uint8)
    emb = DlibEmbedder("detect")
    assert emb.embed(blank).shape == (1, 128) and emb.no_face == 1  # whole crop used
    with pytest.raises(NoFaceError):
        emb.embed(blank, strict=True)


def test_embedder_without_identities(tmp_path: Path) -> None:
    from facebalance.data.shards import write_table_atomic

    (tmp_path / "train").mkdir()
    write_table_atomic(__import__("pandas").DataFrame({"id": ["a"], "image": [b""]}),
                       tmp_path / "train" / "part-00000.parquet")
    with pytest.raises(FacebalanceError, match="have no identity column"):
        embedding_rows(tmp_path, need_identity=True)
    assert embedding_rows(tmp_path, need_identity=False)["identity"].tolist() == [""]


def test_pairs_possible_says_why_not() -> None:
    from facebalance.data.embeddings import pairs_possible

    rows = __import__("pandas").DataFrame({
        "split": ["train"] * 3 + ["val"] * 3 + ["test"] * 3,
        "identity": ["a", "a", "b", "c", "c", "d", "e", "f", "g"]})
    assert pairs_possible(rows) == "the test split has 3 identities, 0 with two images"
    rows.loc[8, "identity"] = "f"
    assert pairs_possible(rows) == ""
    assert "no identity column" in pairs_possible(rows.assign(identity=""))


def test_dlib_in_worker_processes_equals_one_process(tiny_prepared: Path) -> None:
    """The stage's parallel dlib path: same vectors, same order, same no-face count."""
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")
    rows = embedding_rows(tiny_prepared, need_identity=False).iloc[:40]
    one, many = DlibEmbedder("detect"), DlibEmbedder("detect")
    serial = embed_dataset(one, ShardDataset(rows, {}), batch_size=8, progress=False)
    parallel = embed_dataset(many, ShardDataset(rows, {}), batch_size=8, workers=2,
                             progress=False)
    np.testing.assert_allclose(parallel, serial, atol=1e-6)
    assert many.no_face == one.no_face > 0  # 32 px synthfaces: dlib's HOG finds few faces


def test_embed_shows_progress_with_a_rate(tiny_prepared: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("dlib", reason="the [dlib] extra (make test installs it)")
    rows = embedding_rows(tiny_prepared, need_identity=False).iloc[:16]
    embed_dataset(DlibEmbedder("none"), ShardDataset(rows, {}), batch_size=8)
    err = capsys.readouterr().err
    assert "embed: 100%" in err and "16/16" in err and "img/s" in err


def test_pair_image_rows_keeps_the_faces_the_pairs_use() -> None:
    import pandas as pd

    rows = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "split": ["train"] * 5})
    pairs = pd.DataFrame({"id_a": ["a", "c", "a"], "id_b": ["c", "e", "e"]})
    assert pair_image_rows(rows, pairs)["id"].tolist() == ["a", "c", "e"]
