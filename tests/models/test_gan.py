from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs
from facebalance.errors import FacebalanceError
from facebalance.models.gan import (
    Discriminator,
    GanConfig,
    GanTrainConfig,
    Generator,
    generate_uint8,
    load_generator,
    save_generator,
    train_gan,
)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes(size: int) -> None:
    cfg = GanConfig(image_size=size, latent_dim=16, width=8)
    gen, disc = Generator(cfg).eval(), Discriminator(cfg).eval()
    with torch.no_grad():
        x = gen(torch.randn(2, 16))
        assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
        assert disc(x).shape == (2,)


def test_tiny_gan_trains_and_round_trips(tiny_prepared: Path, tmp_path: Path) -> None:
    ds = ShardDataset(shard_refs(tiny_prepared / "train", ["id"]), {})
    cfg = GanConfig(latent_dim=16, width=8)
    gen, hist = train_gan(ds, cfg, GanTrainConfig(steps=12, batch_size=16, log_every=4),
                          torch.device("cpu"))
    assert [h["step"] for h in hist] == [4, 8, 12]
    assert all(np.isfinite([h["d_loss"], h["g_loss"]]).all() for h in hist)
    assert not gen.training
    path = tmp_path / "g.pt"
    save_generator(path, gen, {"note": "tiny"})
    again = load_generator(path)
    z = torch.randn(3, 16)
    np.testing.assert_array_equal(generate_uint8(gen, z), generate_uint8(again, z))
    assert generate_uint8(gen, z).dtype == np.uint8


def test_torchscript_generator(tmp_path: Path) -> None:
    gen = Generator(GanConfig(latent_dim=8, width=4)).eval()
    path = tmp_path / "g.ts"
    torch.jit.save(torch.jit.trace(gen, torch.randn(2, 8)), str(path))
    loaded = load_generator(path, latent_dim=8)
    assert loaded.cfg.image_size == 32 and loaded.cfg.latent_dim == 8
    with pytest.raises(FacebalanceError, match=r"set gan\.latent_dim"):
        load_generator(path)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(FacebalanceError, match="neither a facebalance generator checkpoint"):
        load_generator(tmp_path / "junk.pt", latent_dim=8)


def test_divergence_is_an_error(tiny_prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ShardDataset(shard_refs(tiny_prepared / "val", ["id"]), {})
    monkeypatch.setattr(Discriminator, "forward",
                        lambda self, x: self.net(x).flatten() * float("nan"))
    with pytest.raises(FacebalanceError, match="GAN training diverged at step 1"):
        train_gan(ds, GanConfig(latent_dim=8, width=4), GanTrainConfig(steps=3, batch_size=8),
                  torch.device("cpu"))


def test_a_mapping_network_generator_is_seen_in_w(tmp_path: Path) -> None:
    from facebalance.latent.invert import InvertConfig, invert_batch
    from facebalance.latent.sampling import sample_latents, sample_prior
    from facebalance.models.gan import (
        WSpaceGenerator,
        prior_latents,
        prior_latents_numpy,
        whiten,
    )

    torch.manual_seed(0)
    full = Generator(GanConfig(latent_dim=16, width=8, mapping_layers=3)).eval()
    z = torch.randn(5, 16)
    with torch.no_grad():
        np.testing.assert_allclose(full(z).numpy(),
                                   full.synthesis(full.mapping(z)).numpy(), atol=1e-6)
    save_generator(tmp_path / "g.pt", full, {})
    gen = load_generator(tmp_path / "g.pt")
    assert isinstance(gen, WSpaceGenerator) and gen.cfg.mapping_layers == 3
    with torch.no_grad():
        w = prior_latents(gen, z)
        np.testing.assert_allclose(gen(w).numpy(), full(z).numpy(), atol=1e-6)
        white = whiten(gen, prior_latents(gen, torch.randn(4000, 16)))
    assert abs(float(white.mean())) < 0.1 and abs(float(white.std()) - 1) < 0.1
    draws = sample_prior(gen, 7, seed=3)
    np.testing.assert_allclose(
        draws, prior_latents_numpy(gen, sample_latents(7, 16, 3)), atol=1e-6)
    # Inversion works in w: images of w latents are found again. (An untrained DCGAN draws
    # nearly constant images: a linear synthesis makes images that carry their latent.)
    full.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3 * 32 * 32),
                                   torch.nn.Tanh(), torch.nn.Unflatten(1, (3, 32, 32)))
    view = WSpaceGenerator(full.eval())
    torch.manual_seed(1)
    with torch.no_grad():
        x = view(prior_latents(view, torch.randn(8, 16)))
    start = prior_latents(view, torch.randn(8, 16))
    out = invert_batch(view, None, x, start,
                       InvertConfig(method="optimize", steps=60, lr=0.05, prior_weight=0.01))
    assert out["error"].mean() < 0.5 * out["error_random"].mean()


def test_without_a_mapping_network_latents_are_z() -> None:
    from facebalance.latent.sampling import sample_latents, sample_prior
    from facebalance.models.gan import prior_latents, whiten

    gen = Generator(GanConfig(latent_dim=16, width=8)).eval()
    assert gen.mapping is None and "mapping" not in " ".join(gen.state_dict())
    z = torch.randn(3, 16)
    assert prior_latents(gen, z) is z and whiten(gen, z) is z
    np.testing.assert_array_equal(sample_prior(gen, 9, seed=4), sample_latents(9, 16, 4))
    # A checkpoint written before mapping_layers existed loads as before.
    cfg = {"image_size": 32, "latent_dim": 16, "width": 8}
    assert GanConfig(**cfg).mapping_layers == 0


def test_the_mapping_network_keeps_the_latent_spread() -> None:
    """w must vary as much as z does, or the generator sees one latent (collapse)."""
    from facebalance.models.gan import MappingNetwork

    torch.manual_seed(0)
    w = MappingNetwork(128, 4)(torch.randn(2000, 128)).detach()
    assert 0.3 < float(w.std(dim=0).mean()) < 3.0


# A user's exported generator (gan.checkpoint): torch.export .pt2 and ONNX.

def _export(gen: torch.nn.Module, path: Path, fmt: str, batch: int | None) -> Path:
    """``gen`` exported as ``fmt`` for a fixed ``batch`` (None: any batch size)."""
    import warnings

    z = torch.randn(batch or 2, gen.cfg.latent_dim)
    if fmt == "pt2":
        shapes = None if batch else ({0: torch.export.Dim("b", min=1, max=4096)},)
        torch.export.save(torch.export.export(gen, (z,), dynamic_shapes=shapes), path)
    else:
        with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated
            warnings.simplefilter("ignore")
            torch.onnx.export(gen, (z,), path, dynamo=False, input_names=["z"],
                              output_names=["x"],
                              dynamic_axes=None if batch else {"z": {0: "b"}, "x": {0: "b"}})
    return path


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
@pytest.mark.parametrize("batch", [None, 4])
def test_an_exported_generator_draws_what_the_module_draws(fmt: str, batch: int | None,
                                                           tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = Generator(GanConfig(latent_dim=8, width=4)).eval()
    exported = _export(gen, tmp_path / f"g.{fmt}", fmt, batch)
    # train_gan copies an adopted generator to models/gan/generator.pt: read by content.
    copy = tmp_path / "generator.pt"
    copy.write_bytes(exported.read_bytes())
    loaded = load_generator(copy, latent_dim=8)
    assert (loaded.format, loaded.cfg.latent_dim, loaded.cfg.image_size) == (fmt, 8, 32)
    assert loaded.batch == batch and not loaded.training
    z = torch.randn(7, 8)  # not a multiple of the fixed batch: the last chunk is padded
    with torch.no_grad():
        np.testing.assert_allclose(loaded(z).numpy(), gen(z).numpy(), atol=1e-5)
    assert generate_uint8(loaded, z).shape == (7, 32, 32, 3)
    z.requires_grad_(True)
    if fmt == "pt2":  # latents optimise through it (the inversion's refinement)
        loaded(z).square().sum().backward()
        want = torch.autograd.grad(gen(z).square().sum(), z)[0]
        np.testing.assert_allclose(z.grad.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
    else:
        with pytest.raises(FacebalanceError, match=r"generator\.pt is an ONNX generator, run by "
                                                   r"onnxruntime without gradients.*"
                                                   r"invert\.method: encoder"):
            loaded(z)


def test_exported_generators_that_do_not_fit_are_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ..conftest import with_pickled_entry

    gen = Generator(GanConfig(latent_dim=8, width=4)).eval()
    pt2 = _export(gen, tmp_path / "g.pt2", "pt2", None)
    for path in (pt2, _export(gen, tmp_path / "g.onnx", "onnx", None)):
        with pytest.raises(FacebalanceError, match=rf"^{path} takes 8-d latents but "
                                                   r"gan\.latent_dim is 16; set "
                                                   r"gan\.latent_dim: 8$"):
            load_generator(path, latent_dim=16)
    # A program whose output is not images.
    head = torch.nn.Linear(8, 1).eval()
    torch.export.save(torch.export.export(head, (torch.randn(2, 8),)), tmp_path / "h.pt2")
    with pytest.raises(FacebalanceError, match=r"h\.pt2: expected \(B, 3, S, S\) images from "
                                               r"\(B, 8\) latents, got \(2, 1\)"):
        load_generator(tmp_path / "h.pt2", latent_dim=8)
    # A .pt2 that torch.export.load would unpickle is refused before it is read.
    bad = with_pickled_entry(pt2, tmp_path / "bad.pt2")
    with pytest.raises(FacebalanceError, match=r"^gan\.checkpoint: .*bad\.pt2 holds a pickled "
                                               r"entry"):
        load_generator(bad, latent_dim=8)
    torch.save(gen.state_dict(), tmp_path / "bare.pt")  # tensors, no architecture
    with pytest.raises(FacebalanceError, match=r"bare\.pt holds tensors but is no facebalance "
                                               r"generator checkpoint"):
        load_generator(tmp_path / "bare.pt", latent_dim=8)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model")
    with pytest.raises(FacebalanceError, match=r"junk\.onnx is neither a facebalance generator "
                                               r"checkpoint nor a torch\.export program, ONNX "
                                               r"or TorchScript \(onnxruntime: "):
        load_generator(junk, latent_dim=8)
    # An ONNX generator whose weights file beside it is gone: said so, not "neither".
    onnx = pytest.importorskip("onnx")
    onnx.save_model(onnx.load(str(tmp_path / "g.onnx")), str(tmp_path / "ext.onnx"),
                    save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(FacebalanceError, match=r"ext\.onnx keeps its weights in files beside "
                                               r"it .*ext\.onnx\.data is missing: put the "
                                               r"model's data file beside it$"):
        load_generator(tmp_path / "ext.onnx", latent_dim=8)
    for missing in ("onnxruntime", "onnx"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, missing, None)  # import raises ImportError
            with pytest.raises(FacebalanceError, match=r"if it is ONNX, install onnxruntime "
                                                       r"and onnx: pip install "
                                                       r"facebalance\[onnx\]$"):
                load_generator(tmp_path / "g.onnx", latent_dim=8)
