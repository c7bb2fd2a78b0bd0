"""base.precision: how it resolves per device, and what it does to the training loops.

The fp32 default must train exactly as the loop did before precision existed (the
committed results were made so): one test replays that loop by hand and compares bits.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance import precision as prec
from facebalance.config import FP16_NEEDS_CUDA, parse_params
from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.data.shards import shard_refs
from facebalance.errors import FacebalanceError
from facebalance.models.classifier import (
    ClassifierConfig,
    build_classifier,
    load_checkpoint,
    save_checkpoint,
)
from facebalance.models.encoder import EncoderConfig, EncoderTrainConfig, train_encoder
from facebalance.models.gan import GanConfig, GanTrainConfig, train_gan
from facebalance.models.train import (
    TrainConfig,
    head_targets,
    memory_format,
    task_loss,
    train_classifier,
    warmup_cosine,
)
from facebalance.task import BINARY_TASK

CPU = torch.device("cpu")
NO_CUDA = "needs a CUDA GPU (none here): the CUDA precision path is untested on this machine"


@pytest.fixture
def blond(tiny_prepared: Path) -> ShardDataset:
    """The tiny train split with blond labels and unit weights (480 images)."""
    refs = shard_refs(tiny_prepared / "train", ["id", "blond"])
    return ShardDataset(refs, {"label": refs["blond"].to_numpy(np.float32),
                               "weight": np.ones(len(refs), np.float32)})


def _weights(model: torch.nn.Module) -> dict[str, bytes]:
    return {k: v.detach().cpu().contiguous().numpy().tobytes()
            for k, v in model.state_dict().items()}


# --- resolution ---------------------------------------------------------------------------

def test_explicit_settings_resolve_to_themselves_on_cpu() -> None:
    assert prec.resolve_precision("fp32", CPU) == "fp32"
    assert prec.resolve_precision("bf16", CPU) == "bf16"


@pytest.mark.parametrize(("amx", "picked"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_picks_bf16_only_with_amx(monkeypatch: pytest.MonkeyPatch, amx: bool,
                                              picked: str) -> None:
    monkeypatch.setattr(prec, "cpu_has_amx", lambda: amx)
    assert prec.resolve_precision("auto", CPU) == picked
    assert prec.precision_record("auto", picked) == {"precision": picked,
                                                     "precision_setting": "auto"}


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    amx, avx2 = tmp_path / "amx", tmp_path / "avx2"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16 amx_bf16 amx_tile\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert prec.cpu_has_amx(amx) and not prec.cpu_has_amx(avx2)


def test_fp16_on_cpu_is_refused_at_setup_and_at_load() -> None:
    message = ("params: base.precision = 'fp16' needs a CUDA device, but the device is 'cpu'; "
               "use bf16 or fp32")
    assert FP16_NEEDS_CUDA.format(device="cpu") == message
    with pytest.raises(FacebalanceError, match=f"^{re.escape(message)}$"):
        prec.resolve_precision("fp16", CPU)
    with pytest.raises(FacebalanceError, match=f"^{re.escape(message)}$"):
        parse_params({"base": {"device": "cpu", "precision": "fp16"}})
    # device auto: unknown until setup, so the params load and resolution refuses later.
    assert parse_params({"base": {"precision": "fp16"}}).base.precision == "fp16"


def test_an_unknown_precision_names_the_key_and_the_valid_values() -> None:
    with pytest.raises(FacebalanceError, match=r"base\.precision.*fp32, bf16, fp16, auto"):
        parse_params({"base": {"precision": "fp8"}})


def test_fp32_adds_nothing_and_runs_no_autocast() -> None:
    assert prec.precision_record("fp32", "fp32") == {}
    assert prec.grad_scaler("fp32", CPU) is None and prec.grad_scaler("bf16", CPU) is None
    with prec.autocast("fp32", CPU):
        assert not torch.is_autocast_enabled("cpu")
    with prec.autocast("bf16", CPU):
        out = torch.nn.Linear(4, 2)(torch.ones(3, 4))
    assert out.dtype == torch.bfloat16


# --- the training loops -------------------------------------------------------------------

def test_fp32_trains_bit_for_bit_like_the_loop_before_precision(blond: ShardDataset) -> None:
    """The pre-precision loop (a .item() per batch, no autocast) replayed by hand."""
    cfg = TrainConfig(epochs=1, batch_size=64, augment=False, seed=1)
    torch.manual_seed(0)
    ours = build_classifier(ClassifierConfig(width=16))
    (row,) = train_classifier(ours, blond, cfg, CPU)

    torch.manual_seed(0)
    ref = build_classifier(ClassifierConfig(width=16))
    fmt = memory_format(ref)
    ref.to(CPU, memory_format=fmt).train()
    loader, sampler = make_loader(blond, 64, shuffle=True, seed=1)
    opt = torch.optim.AdamW(ref.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(len(sampler)))
    sampler.set_epoch(0)
    total = count = 0.0
    for x, rows in loader:
        x = to_float(x).contiguous(memory_format=fmt)
        w = torch.as_tensor(rows["weight"], dtype=torch.float32)
        loss = (task_loss(BINARY_TASK, ref(x), head_targets(BINARY_TASK, rows, CPU)) * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(x)
        count += len(x)
    assert row["loss"] == total / count
    assert _weights(ours) == _weights(ref)


def test_fp32_is_the_same_run_as_precision_unset(blond: ShardDataset) -> None:
    runs = []
    for cfg in (TrainConfig(epochs=1, batch_size=64), TrainConfig(epochs=1, batch_size=64,
                                                                   precision="fp32")):
        torch.manual_seed(0)
        net = build_classifier(ClassifierConfig(width=16))
        runs.append((train_classifier(net, blond, cfg, CPU)[0]["loss"], _weights(net)))
    assert runs[0] == runs[1]


def test_bf16_trains_on_cpu_and_the_checkpoint_says_so(blond: ShardDataset,
                                                       tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ClassifierConfig(width=16)
    net = build_classifier(config)
    hist = train_classifier(net, blond, TrainConfig(epochs=1, batch_size=64,
                                                    precision="bf16"), CPU)
    assert math.isfinite(hist[0]["loss"])
    assert all(v.dtype == torch.float32 for v in net.parameters())  # the weights stay fp32
    # What train_attr / train_target store: the precision record in the meta.
    save_checkpoint(tmp_path / "m.pt", net, config, {"seed": 0,
                                                      **prec.precision_record("bf16", "bf16")})
    _, _, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["precision"] == "bf16"


def _gan_and_encoder_train(prepared: Path, precision: str, device: torch.device) -> None:
    """Three steps of the GAN, then of the encoder on it, in ``precision``: finite losses."""
    ds = ShardDataset(shard_refs(prepared / "val", ["id"]), {})
    gen, hist = train_gan(ds, GanConfig(latent_dim=8, width=4),
                          GanTrainConfig(steps=3, batch_size=8, precision=precision), device)
    assert all(math.isfinite(hist[-1][k]) for k in ("d_loss", "g_loss"))
    _, curve = train_encoder(gen, EncoderConfig(latent_dim=8, width=4),
                             EncoderTrainConfig(steps=3, batch_size=8, precision=precision),
                             device)
    assert math.isfinite(curve[-1]["latent_mse"])


def test_bf16_gan_and_encoder_train_on_cpu(tiny_prepared: Path) -> None:
    _gan_and_encoder_train(tiny_prepared, "bf16", CPU)


def test_the_loops_refuse_fp16_on_cpu(blond: ShardDataset) -> None:
    net = build_classifier(ClassifierConfig(width=16))
    with pytest.raises(FacebalanceError, match="'fp16' needs a CUDA device"):
        train_classifier(net, blond, TrainConfig(precision="fp16"), CPU)


# --- CUDA (skipped here: no GPU) ----------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_cuda_training_in_each_precision(blond: ShardDataset, precision: str) -> None:
    cuda = torch.device("cuda")
    used = prec.resolve_precision(precision, cuda)
    if used == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    net = build_classifier(ClassifierConfig(width=16))
    hist = train_classifier(net, blond, TrainConfig(epochs=1, batch_size=64,
                                                    precision=used), cuda)
    assert math.isfinite(hist[0]["loss"])
    assert all(v.dtype == torch.float32 and v.is_cuda for v in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cuda_fp16_gan_and_encoder_train_with_a_scaler(tiny_prepared: Path) -> None:
    cuda = torch.device("cuda")
    assert isinstance(prec.grad_scaler("fp16", cuda), torch.amp.GradScaler)
    _gan_and_encoder_train(tiny_prepared, "fp16", cuda)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_host_batches_reach_cuda_through_pinned_memory() -> None:
    x = torch.arange(12, dtype=torch.uint8)
    out = prec.to_device(x, torch.device("cuda"))
    assert out.is_cuda and torch.equal(out.cpu(), x)
