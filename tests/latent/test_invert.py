from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs
from facebalance.errors import FacebalanceError
from facebalance.latent.invert import (
    ERROR_COLUMNS,
    InvertConfig,
    error_summary,
    invert_batch,
    invert_dataset,
    optimize_latents,
    prior_penalty,
    reconstruction_error,
    train_positions,
)
from facebalance.latent.sampling import generate_shards, sample_latents
from facebalance.models.encoder import (
    Encoder,
    EncoderConfig,
    EncoderTrainConfig,
    load_encoder,
    save_encoder,
    train_encoder,
)
from facebalance.models.gan import GanConfig, Generator


@pytest.fixture(scope="module")
def gen() -> Generator:
    torch.manual_seed(0)
    return Generator(GanConfig(latent_dim=8, width=8)).eval()


def test_prior_penalty_is_zero_on_the_shell_and_grows_off_it() -> None:
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0], [10.0, 0.0]])  # norms 5, 0, 10; sqrt(d) = 1.41
    expected = [(5 / 2**0.5 - 1) ** 2, 1.0, (10 / 2**0.5 - 1) ** 2]
    np.testing.assert_allclose(prior_penalty(z).numpy(), expected, rtol=1e-6)
    shell = torch.randn(2000, 128)
    assert prior_penalty(shell).mean() < 0.01


def test_batched_optimisation_equals_one_image_at_a_time(gen: Generator) -> None:
    torch.manual_seed(1)
    x = gen(torch.randn(5, 8)).detach()
    z0 = torch.randn(5, 8)
    batched = optimize_latents(gen, x, z0, steps=6, lr=0.05, prior_weight=0.1)
    loop = torch.cat([optimize_latents(gen, x[i:i + 1], z0[i:i + 1], steps=6, lr=0.05,
                                       prior_weight=0.1) for i in range(5)])
    np.testing.assert_allclose(batched.numpy(), loop.numpy(), rtol=1e-4, atol=1e-5)
    assert not torch.equal(batched, z0)
    assert all(p.requires_grad for p in gen.parameters())  # the generator is left as it was


def test_optimisation_needs_eval_mode() -> None:
    g = Generator(GanConfig(latent_dim=8, width=4)).train()
    with pytest.raises(FacebalanceError, match="eval mode"):
        optimize_latents(g, torch.zeros(1, 3, 32, 32), torch.zeros(1, 8), steps=1, lr=0.1,
                         prior_weight=0)


def test_inversion_beats_a_random_latent_on_generated_images(gen: Generator) -> None:
    torch.manual_seed(2)
    z_true = torch.randn(16, 8)
    x = gen(z_true).detach()
    out = invert_batch(gen, None, x, torch.randn(16, 8),
                       InvertConfig(method="optimize", steps=60, lr=0.1, prior_weight=0.0))
    assert out["error"].mean() < 0.5 * out["error_random"].mean()
    assert "error_encoder" not in out
    # The reported error is the reconstruction error of the returned latents.
    np.testing.assert_allclose(out["error"].numpy(),
                               reconstruction_error(gen, out["z"], x).numpy(), rtol=1e-5)


class LinearGenerator(torch.nn.Module):
    """tanh of a random linear map of z: images that carry their latent (an untrained
    DCGAN's are nearly constant, with nothing for an encoder to read)."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = GanConfig(latent_dim=8)
        self.a = torch.nn.Linear(8, 3 * 32 * 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.a(z)).view(-1, 3, 32, 32)


def test_encoder_learns_the_generator_inverse_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = LinearGenerator().eval()
    cfg = EncoderConfig(image_size=32, latent_dim=8, width=8)
    untrained = Encoder(cfg).eval()
    enc, history = train_encoder(gen, cfg, EncoderTrainConfig(steps=90, batch_size=32,
                                                              lr=0.003, log_every=30),
                                 torch.device("cpu"))
    assert [h["step"] for h in history] == [30, 60, 90]
    torch.manual_seed(3)
    z = torch.randn(64, 8)
    x = gen(z).detach()
    with torch.no_grad():
        err_trained = (enc(x) - z).pow(2).mean()
        err_untrained = (untrained(x) - z).pow(2).mean()
    assert err_trained < 0.5 * err_untrained and err_trained < 0.5  # prior variance is 1
    save_encoder(tmp_path / "e.pt", enc, {"note": "t"})
    back = load_encoder(tmp_path / "e.pt")
    with torch.no_grad():
        torch.testing.assert_close(back(x), enc(x))
    with pytest.raises(FacebalanceError, match="does not match the generator"):
        train_encoder(gen, EncoderConfig(latent_dim=9), EncoderTrainConfig(steps=1),
                      torch.device("cpu"))
    with pytest.raises(FacebalanceError, match="does not exist"):
        load_encoder(tmp_path / "missing.pt")


def test_invert_dataset_keeps_row_order_and_reports_each_error(gen: Generator,
                                                              tmp_path: Path) -> None:
    z_true = sample_latents(21, 8, seed=4)
    ids = [f"g{i}" for i in range(21)]
    generate_shards(gen, z_true, ids, tmp_path / "img", device=torch.device("cpu"),
                    batch_size=8, rows_per_file=10, row_group_size=5, progress=False)
    refs = shard_refs(tmp_path / "img", ["id"]).iloc[::-1].reset_index(drop=True)
    data = ShardDataset(refs, {})
    enc = Encoder(EncoderConfig(latent_dim=8, width=4)).eval()
    cfg = InvertConfig(method="both", steps=3, lr=0.05, batch_size=8)
    z, errors = invert_dataset(gen, enc, data, cfg, torch.device("cpu"), seed=0,
                               progress=False)
    assert z.shape == (21, 8) and z.dtype == np.float32
    assert list(errors.columns) == list(ERROR_COLUMNS) and not errors.isna().any().any()
    # Row k is the inversion of refs row k: same as inverting that image alone.
    k = 4
    img, _ = data.__getitems__([k])
    x = img.permute(0, 3, 1, 2).float().div(127.5).sub(1)
    with torch.no_grad():
        z0 = enc(x)
    alone = optimize_latents(gen, x, z0, steps=3, lr=0.05, prior_weight=cfg.prior_weight)
    np.testing.assert_allclose(z[k], alone[0].numpy(), rtol=1e-4, atol=1e-5)
    # optimize only: no encoder error; the same seed gives the same random errors.
    _, err2 = invert_dataset(gen, None, data, InvertConfig(method="optimize", steps=0),
                             torch.device("cpu"), seed=0, progress=False)
    assert err2["error_encoder"].isna().all()
    np.testing.assert_allclose(err2["error_random"], errors["error_random"], rtol=1e-5)
    np.testing.assert_allclose(err2["error"], err2["error_random"], rtol=1e-5)  # 0 steps
    with pytest.raises(FacebalanceError, match="needs an encoder"):
        invert_dataset(gen, None, data, InvertConfig(method="both"), torch.device("cpu"), 0,
                       progress=False)
    with pytest.raises(FacebalanceError, match="unknown invert method"):
        invert_dataset(gen, None, data, InvertConfig(method="gradient"), torch.device("cpu"),
                       0, progress=False)


def test_error_summary_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"split": rng.choice(["train", "test"], 60),
                          "group": rng.integers(0, 3, 60),
                          "error_random": rng.uniform(0.2, 0.4, 60),
                          "error_encoder": rng.uniform(0.1, 0.2, 60),
                          "error": rng.uniform(0.05, 0.1, 60)})
    out = error_summary(frame, {0: "a", 1: "b", 2: "c"})
    assert set(out) == {"train", "test"}
    for split in ("train", "test"):
        rows = frame[frame["split"] == split]
        assert out[split]["n"] == len(rows)
        assert out[split]["error"] == pytest.approx(rows["error"].mean())
        ratios = []
        for g, name in enumerate("abc"):
            sub = rows[rows["group"] == g]
            entry = out[split]["by_group"][name]
            assert entry["error_random"] == pytest.approx(sub["error_random"].mean())
            ratio = sub["error"].mean() / sub["error_random"].mean()
            assert entry["error_ratio"] == pytest.approx(ratio)
            ratios.append(ratio)
        assert out[split]["worst_group_ratio"] == pytest.approx(max(ratios))
    no_encoder = error_summary(frame.assign(error_encoder=np.nan), {})
    assert no_encoder["test"]["error_encoder"] is None


def test_train_positions_align_latents_with_training_rows() -> None:
    frame = pd.DataFrame({"id": ["t1", "a", "b", "c"], "split": ["test", "train", "train",
                                                                 "train"]})
    pos = train_positions(frame, pd.Series(["c", "a", "b"]), "lat.parquet")
    np.testing.assert_array_equal(pos, [3, 1, 2])
    with pytest.raises(FacebalanceError, match=r"lat\.parquet has no latent for training "
                                               r"image 't1'"):  # a test latent is not one
        train_positions(frame, pd.Series(["a", "t1"]), "lat.parquet")
    twice = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    with pytest.raises(FacebalanceError, match=r"lat\.parquet: training image 'a' has two"):
        train_positions(twice, pd.Series(["a"]), "lat.parquet")


def test_invert_real_faces_trains_the_encoder_and_summarizes(gen: Generator,
                                                            tmp_path: Path) -> None:
    from facebalance.config import InvertParams
    from facebalance.latent.inversion import invert_real_faces, test_subset

    z_true = sample_latents(24, 8, seed=1)
    generate_shards(gen, z_true, [f"g{i}" for i in range(24)], tmp_path / "img",
                    device=torch.device("cpu"), batch_size=8, progress=False)
    refs = shard_refs(tmp_path / "img", ["id"])
    test = test_subset(refs.iloc[16:], 5, seed=0)
    assert len(test) == 5 and test.index.is_monotonic_increasing
    assert len(test_subset(refs.iloc[16:], 0, seed=0)) == 8
    rows = pd.concat([refs.iloc[:16].assign(split="train"), test.assign(split="test")],
                     ignore_index=True).assign(group=lambda f: np.arange(len(f)) % 2)
    params = InvertParams(encoder_steps=3, encoder_width=4, steps=2, batch_size=8)
    result = invert_real_faces(gen, rows, params, group_names={0: "g=0", 1: "g=1"},
                               encoder_seed=0, seed=1, device=torch.device("cpu"))
    assert result.encoder is not None and result.table.num_rows == 21
    assert result.table.column("id").to_pylist() == rows["id"].tolist()
    assert set(result.summary["test"]["by_group"]) == {"g=0", "g=1"}
    assert result.summary["encoder"]["steps"] == 3
    assert [len(r) for r in result.rows] == [5, 5, 5]  # images, encoder, final


def test_an_onnx_generator_inverts_with_the_encoder_and_refuses_optimisation_first(
        gen: Generator, tmp_path: Path) -> None:
    import warnings

    from facebalance.config import InvertParams
    from facebalance.errors import FacebalanceError
    from facebalance.latent.inversion import invert_real_faces
    from facebalance.models.gan import load_generator

    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(gen, (torch.randn(2, 8),), tmp_path / "g.onnx", dynamo=False,
                          input_names=["z"], dynamic_axes={"z": {0: "b"}})
    onnx = load_generator(tmp_path / "g.onnx", latent_dim=8)
    generate_shards(gen, sample_latents(12, 8, seed=1), [f"g{i}" for i in range(12)],
                    tmp_path / "img", device=torch.device("cpu"), batch_size=8,
                    progress=False)
    refs = shard_refs(tmp_path / "img", ["id"])
    rows = refs.assign(split=["train"] * 8 + ["test"] * 4, group=np.arange(12) % 2)
    kwargs = {"group_names": {0: "g=0", 1: "g=1"}, "encoder_seed": 0, "seed": 1,
              "device": torch.device("cpu")}
    for method in ("both", "optimize"):  # refused before the encoder trains
        with pytest.raises(FacebalanceError, match=r"g\.onnx is an ONNX generator.*set "
                                                   r"invert\.method: encoder"):
            invert_real_faces(onnx, rows, InvertParams(method=method, encoder_steps=10**6),
                              **kwargs)
    result = invert_real_faces(onnx, rows, InvertParams(
        method="encoder", encoder_steps=3, encoder_width=4, batch_size=8), **kwargs)
    assert result.table.num_rows == 12 and result.summary["method"] == "encoder"
    # steps 0 optimises nothing: "both" is then the encoder alone, which ONNX can run.
    invert_real_faces(onnx, rows, InvertParams(encoder_steps=3, encoder_width=4, steps=0,
                                               batch_size=8), **kwargs)
