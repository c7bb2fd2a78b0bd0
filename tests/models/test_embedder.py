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
    read_embeddings,
    write_embeddings,
)
from facebalance.errors import FacebalanceError
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




def test_a_skipped_embedding_writes_every_output(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from facebalance.models.embedder import EmbedOutputs

    rows = pd.DataFrame({"id": ["a"], "split": ["train"], "identity": [""]})
    out = EmbedOutputs(tmp_path / "embed", tmp_path / "emb.parquet", tmp_path / "m.json")
    out.write_skipped(rows, {"model": "dlib"}, "no pairs")
    assert json.loads((tmp_path / "embed" / "embedder.json").read_text()) == {
        "skipped": "no pairs"}
    assert json.loads((tmp_path / "m.json").read_text()) == {"model": "dlib",
                                                             "skipped": "no pairs"}
    got, vectors = read_embeddings(tmp_path / "emb.parquet")
    assert len(got) == 0 and vectors.shape == (0, 1)
