"""An image -> latent encoder for a trained generator, and its checkpoint.

GAN inversion starts here (:mod:`facebalance.latent.invert`): the encoder is trained on
``(G(z), z)`` pairs drawn on the fly from the frozen generator, so it needs no real labels
and no stored dataset, and it maps a real face to a starting latent in one forward pass;
per-image optimisation then refines that start. The architecture mirrors the DCGAN
discriminator (strided convolutions, batch norm) with a linear head onto the latent.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facebalance.errors import FacebalanceError
from facebalance.models.classifier import save_model
from facebalance.models.gan import _n_up, prior_latents
from facebalance.precision import autocast, backward_step, grad_scaler, resolve_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an encoder (stored in its checkpoint)."""

    image_size: int = 32
    latent_dim: int = 128
    width: int = 32


class Encoder(nn.Module):
    """images (B, 3, S, S) in [-1, 1] -> latents (B, latent_dim)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = _n_up(cfg.image_size)
        ch = [cfg.width * 2**i for i in range(n)]  # e.g. 32, 64, 128 down to 4x4
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for cin, cout in itertools.pairwise(ch):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch[-1] * 4 * 4, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Optimisation settings of encoder training."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 0.001
    seed: int = 0
    log_every: int = 100
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (see facebalance.precision)


def train_encoder(gen: nn.Module, cfg: EncoderConfig, train: EncoderTrainConfig,
                  device: torch.device) -> tuple[Encoder, list[dict[str, float]]]:
    """Train an encoder to predict ``z`` from ``G(z)`` with a mean squared latent error.

    Parameters
    ----------
    gen
        The frozen generator (eval mode), mapping ``(B, d)`` latents to ``[-1, 1]`` images.
    cfg
        Encoder architecture; ``latent_dim`` and ``image_size`` must match the generator.
    train
        Steps, batch size, Adam learning rate (cosine-decayed to zero), seed, precision
        (autocast of the generator's and the encoder's forward passes; the target latents,
        the loss and the step stay float32).
    device
        Where to train.

    Returns
    -------
    encoder, history
        The encoder (eval mode) and one row per ``log_every`` steps with the mean
        ``latent_mse`` of the window and the elapsed ``seconds``.
    """
    if gen.cfg.latent_dim != cfg.latent_dim or gen.cfg.image_size != cfg.image_size:
        raise FacebalanceError(
            f"encoder {cfg.image_size}px/{cfg.latent_dim}-d does not match the generator "
            f"({gen.cfg.image_size}px/{gen.cfg.latent_dim}-d)")
    precision = resolve_precision(train.precision, device)
    scaler = grad_scaler(precision, device)
    torch.manual_seed(train.seed)
    enc = Encoder(cfg).to(device).train()
    opt = torch.optim.Adam(enc.parameters(), train.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, train.steps)
    history: list[dict[str, float]] = []
    window, start = 0.0, time.perf_counter()
    losses: list[torch.Tensor] = []  # on the device until the next logging step
    for step in range(1, train.steps + 1):
        with torch.no_grad():  # (G(z), z) pairs, z in the generator's latent space (w)
            z = prior_latents(gen, torch.randn(train.batch_size, cfg.latent_dim, device=device))
            with autocast(precision, device):  # z itself stays float32: it is the target
                x = gen(z)
        with autocast(precision, device):
            pred = enc(x)
        # .float(): the loss in float32 (a no-op returning pred itself in fp32).
        loss = nn.functional.mse_loss(pred.float(), z)
        opt.zero_grad(set_to_none=True)
        backward_step(loss, opt, scaler)
        sched.step()
        losses.append(loss.detach())
        if step % train.log_every == 0 or step == train.steps:
            for value in torch.stack(losses).tolist():  # one sync; summed in step order
                window += value
            losses.clear()
            n = step - (history[-1]["step"] if history else 0)
            history.append({"step": step, "latent_mse": window / n,
                            "seconds": time.perf_counter() - start})
            window = 0.0
            log.info("encoder step %d/%d latent mse %.4f", step, train.steps,
                     history[-1]["latent_mse"])
    return enc.eval(), history


def save_encoder(path: str | Path, enc: Encoder, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "config", "meta"}`` atomically."""
    save_model(path, enc, asdict(enc.cfg), meta)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder checkpoint with ``weights_only=True`` (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"encoder checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise FacebalanceError(f"{path} is not an encoder checkpoint: {err}") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "config"} <= set(ckpt):
        raise FacebalanceError(f"{path} is not an encoder checkpoint (state_dict + config)")
    enc = Encoder(EncoderConfig(**ckpt["config"]))
    enc.load_state_dict(ckpt["state_dict"])
    return enc.to(device).eval()
