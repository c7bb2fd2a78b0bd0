"""DCGAN generator and discriminator, an EMA-smoothed training loop, generator checkpoints.

The classic batch-norm DCGAN at width 32 was measured far better on a few CPU minutes than
a spectral-norm discriminator (../shared/MEASURED.md): it draws recognisable faces with hair
colour and length after ~3 minutes at 32x32. The generator that later stages use is the
exponential moving average of the trained one, which is smoother and more stable.
A user's pretrained generator (TorchScript, or a state dict + config) can replace
training: see :func:`load_generator`.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.errors import FacebalanceError, first_line
from facebalance.models.classifier import (
    UNSAFE_PICKLE,
    holds_pickled_code,
    save_model,
)
from facebalance.precision import (
    autocast,
    backward_step,
    grad_scaler,
    resolve_precision,
    to_device,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GanConfig:
    """Architecture of a DCGAN pair (stored in the generator checkpoint)."""

    image_size: int = 32
    latent_dim: int = 128
    width: int = 32
    mapping_layers: int = 0  # > 0: a StyleGAN-style MLP maps z to w before the DCGAN


def _n_up(image_size: int) -> int:
    n = int(math.log2(image_size // 4))
    if 4 * 2**n != image_size:
        raise FacebalanceError(f"GAN image_size must be 4 * 2**k, got {image_size}")
    return n


class MappingNetwork(nn.Module):
    """StyleGAN's z -> w: z scaled to unit mean square, then ``layers`` x (linear, leaky
    ReLU 0.2), keeping the size. w need not be Gaussian, so attributes the prior's
    isotropy entangles can become linear in w (Karras et al., 2019)."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(layers):
            linear = nn.Linear(dim, dim)
            # Variance-preserving init (He, for leaky ReLU 0.2): PyTorch's default shrinks
            # the variance about 3x per layer, so 4 layers gave a near-constant w and the
            # GAN collapsed (measured: every G(w) scored non-blond).
            nn.init.kaiming_normal_(linear.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            blocks += [linear, nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8))


class Generator(nn.Module):
    """z (B, latent_dim) -> images (B, 3, S, S) in [-1, 1] (through w = mapping(z) when
    ``cfg.mapping_layers`` > 0)."""

    def __init__(self, cfg: GanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = (MappingNetwork(cfg.latent_dim, cfg.mapping_layers)
                        if cfg.mapping_layers else None)
        n = _n_up(cfg.image_size)
        ch = [cfg.width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 128, 64, 32
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.latent_dim, ch[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch[0]), nn.ReLU(True)]
        for cin, cout in itertools.pairwise(ch):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ch[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z) if self.mapping is not None else z)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """Images of intermediate latents (``z`` itself without a mapping network)."""
        return self.net(w[:, :, None, None])


class WSpaceGenerator(nn.Module):
    """A mapping-network generator as the latent stages see it: its latent is w.

    ``forward(w)`` is the synthesis network, so boundaries, complements, inversion,
    interpolation and guided walks all happen in w; :func:`prior_latents` draws w as
    ``mapping(z)``, z ~ N(0, I). ``whiten`` standardizes w by its mean and spread over
    10,000 prior draws (the inversion's prior penalty reads it: w has no Gaussian shell).
    """

    def __init__(self, gen: Generator, n_stats: int = 10000) -> None:
        super().__init__()
        if gen.mapping is None:
            raise FacebalanceError("WSpaceGenerator needs a generator with a mapping network")
        self.gen = gen.eval()
        self.cfg = gen.cfg
        with torch.no_grad():
            z = torch.randn(n_stats, gen.cfg.latent_dim,
                            generator=torch.Generator().manual_seed(0))
            w = gen.mapping(z.to(next(gen.parameters()).device))
        self.register_buffer("w_mean", w.mean(dim=0))
        self.register_buffer("w_std", w.std(dim=0).clamp_min(1e-6))
        self.train(False)  # a view for inference: never trained through

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.gen.synthesis(w)

    def to_latent(self, z: torch.Tensor) -> torch.Tensor:
        """w = mapping(z)."""
        return self.gen.mapping(z)

    def whiten(self, w: torch.Tensor) -> torch.Tensor:
        """w standardized per coordinate (about N(0, I)-scaled)."""
        return (w - self.w_mean) / self.w_std


@torch.no_grad()
def prior_latents(gen: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The latents the generator's stages work in for prior draws ``z`` ~ N(0, I): ``z``
    itself, or w = mapping(z) for a :class:`WSpaceGenerator` (no autograd history: they
    are starting points, never trained through)."""
    return gen.to_latent(z) if isinstance(gen, WSpaceGenerator) else z


def whiten(gen: nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """Latents on the prior's N(0, I) scale: ``latent`` itself, or standardized w."""
    return gen.whiten(latent) if isinstance(gen, WSpaceGenerator) else latent


@torch.no_grad()
def prior_latents_numpy(gen: nn.Module, z: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """:func:`prior_latents` of a float32 array of draws, batch by batch (numpy in and out;
    ``z`` returned as it is without a mapping network)."""
    if not isinstance(gen, WSpaceGenerator):
        return z
    device = gen.w_mean.device
    return np.concatenate([
        gen.to_latent(torch.from_numpy(np.ascontiguousarray(z[s:s + batch_size])).to(device)
                      ).cpu().numpy() for s in range(0, len(z), batch_size)]
        or [np.zeros((0, gen.cfg.latent_dim), np.float32)]).astype(np.float32)


class Discriminator(nn.Module):
    """images (B, 3, S, S) -> real/fake logits (B,)."""

    def __init__(self, cfg: GanConfig) -> None:
        super().__init__()
        n = _n_up(cfg.image_size)
        ch = [cfg.width * 2**i for i in range(n)]  # e.g. 32, 64, 128
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for cin, cout in itertools.pairwise(ch):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ch[-1], 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class GanTrainConfig:
    """Optimisation settings of GAN training (defaults: the ``gan`` params')."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 0.0002
    beta1: float = 0.5
    ema: float = 0.99
    seed: int = 0
    log_every: int = 100
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (see facebalance.precision)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def train_gan(dataset: ShardDataset, cfg: GanConfig, train: GanTrainConfig,
              device: torch.device) -> tuple[Generator, list[dict[str, float]]]:
    """Train a DCGAN on real images with the non-saturating loss.

    Parameters
    ----------
    dataset
        Real training images (any labels are ignored).
    cfg
        Architecture.
    train
        Steps, batch size, Adam settings, EMA decay, seed, precision (autocast of the
        forward passes; the losses, the steps and the EMA stay float32).
    device
        Where to train.

    Returns
    -------
    generator, history
        The EMA generator (eval mode) and one row per ``log_every`` steps with the mean
        ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake`` (mean D probabilities).

    Raises
    ------
    FacebalanceError
        When a loss becomes NaN/inf (checked at each ``log_every`` step), or the
        discriminator wins outright for a whole logging window (D(real) > 0.99 and
        D(fake) < 0.01: the generator has collapsed).
    """
    precision = resolve_precision(train.precision, device)
    # One scaler per optimizer: each loss's overflow skips only its own step.
    scaler_d, scaler_g = grad_scaler(precision, device), grad_scaler(precision, device)
    torch.manual_seed(train.seed)
    gen, disc = Generator(cfg).to(device), Discriminator(cfg).to(device)
    gen.apply(_init_weights)
    disc.apply(_init_weights)
    ema = copy.deepcopy(gen).eval()
    opt_g = torch.optim.Adam(gen.parameters(), train.lr, betas=(train.beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), train.lr, betas=(train.beta1, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    loader, sampler = make_loader(dataset, train.batch_size, shuffle=True, seed=train.seed)
    history: list[dict[str, float]] = []
    window = np.zeros(4)
    # Each step's (d_loss, g_loss, D(real), D(fake)) stays on the device until the next
    # logging step reads the window back at once: no host sync per step.
    pending: list[torch.Tensor] = []
    step, epoch, start = 0, 0, time.perf_counter()
    while step < train.steps:
        sampler.set_epoch(epoch)
        epoch += 1
        for x, _ in loader:
            if step >= train.steps:
                break
            real = to_float(to_device(x, device))
            flip = torch.rand(len(real), device=device) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
            z = torch.randn(len(real), cfg.latent_dim, device=device)
            with autocast(precision, device):
                fake = gen(z)
                d_real, d_fake = disc(real), disc(fake.detach())
            # .float(): the losses in float32 (no-ops returning the tensors in fp32).
            d_real, d_fake = d_real.float(), d_fake.float()
            loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
            opt_d.zero_grad(set_to_none=True)
            backward_step(loss_d, opt_d, scaler_d)
            with autocast(precision, device):
                d_gen = disc(fake)
            d_gen = d_gen.float()
            loss_g = bce(d_gen, torch.ones_like(d_gen))
            opt_g.zero_grad(set_to_none=True)
            backward_step(loss_g, opt_g, scaler_g)
            _ema_update(ema, gen, train.ema if step > 100 else 0.0)
            step += 1
            pending.append(torch.stack([loss_d.detach(), loss_g.detach(),
                                        torch.sigmoid(d_real.detach()).mean(),
                                        torch.sigmoid(d_fake.detach()).mean()]))
            if step % train.log_every == 0 or step == train.steps:
                first = step - len(pending) + 1
                for i, row in enumerate(torch.stack(pending).tolist()):
                    vals = np.array(row)
                    if not np.isfinite(vals[:2]).all():
                        raise FacebalanceError(
                            f"GAN training diverged at step {first + i}: d_loss={vals[0]}, "
                            f"g_loss={vals[1]}; lower gan.lr or change gan.seed")
                    window += vals  # step by step, in order: the sums of a per-step loop
                pending.clear()
                n = step - (history[-1]["step"] if history else 0)
                mean = window / n
                window[:] = 0
                history.append({"step": step, "d_loss": mean[0], "g_loss": mean[1],
                                "d_real": mean[2], "d_fake": mean[3],
                                "seconds": time.perf_counter() - start})
                log.info("gan step %d/%d d_loss %.3f g_loss %.3f D(real) %.2f D(fake) %.2f",
                         step, train.steps, *mean)
                if mean[2] > 0.99 and mean[3] < 0.01 and step > 5 * train.log_every:
                    raise FacebalanceError(
                        f"GAN training collapsed at step {step}: the discriminator rejects "
                        "every generated image; lower gan.lr or change gan.seed")
    return ema.eval(), history


def save_generator(path: str | Path, gen: Generator, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "config", "meta"}`` atomically."""
    save_model(path, gen, asdict(gen.cfg), meta)


class _ScriptedGenerator(nn.Module):
    """A user's TorchScript generator with the latent size it declares."""

    def __init__(self, module: torch.jit.ScriptModule, latent_dim: int, image_size: int) -> None:
        super().__init__()
        self.module = module
        self.cfg = GanConfig(image_size=image_size, latent_dim=latent_dim, width=0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z)


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   latent_dim: int | None = None) -> nn.Module:
    """Load a generator: a facebalance checkpoint or a TorchScript file.

    A facebalance checkpoint (``torch.save`` of state dict + config) is loaded with
    ``weights_only=True``. A TorchScript archive (``torch.jit.save``) must map
    ``(B, latent_dim)`` latents to ``(B, 3, S, S)`` images in [-1, 1]; pass ``latent_dim``.
    The returned module has a ``cfg`` (:class:`GanConfig`) and is in eval mode; for a
    generator with a mapping network it is the :class:`WSpaceGenerator` view (latents are
    w).
    """
    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"generator checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        refused = None
    except Exception as err:  # not a plain state dict: maybe TorchScript
        ckpt, refused = None, err
    if isinstance(ckpt, dict) and {"state_dict", "config"} <= set(ckpt):
        gen = Generator(GanConfig(**ckpt["config"]))
        gen.load_state_dict(ckpt["state_dict"])
        gen = gen.to(device).eval()
        # The latent stages work in w when the generator has a mapping network.
        return WSpaceGenerator(gen) if gen.mapping is not None else gen
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream, still common
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        if holds_pickled_code(path):
            raise FacebalanceError(UNSAFE_PICKLE.format(what="generator", path=path)) from None
        raise FacebalanceError(
            f"{path} is neither a facebalance generator checkpoint nor TorchScript "
            f"({first_line(refused or err)})") from None
    if latent_dim is None:
        raise FacebalanceError(f"{path} is TorchScript: set gan.latent_dim to its latent size")
    with torch.no_grad():
        out = module(torch.zeros(2, latent_dim))
    if out.ndim != 4 or out.shape[:2] != (2, 3) or out.shape[2] != out.shape[3]:
        raise FacebalanceError(
            f"{path}: expected (B, 3, S, S) images from (B, {latent_dim}) latents, got "
            f"{tuple(out.shape)}")
    return _ScriptedGenerator(module, latent_dim, int(out.shape[2])).to(device).eval()


@torch.no_grad()
def generate_uint8(gen: nn.Module, z: torch.Tensor) -> np.ndarray:
    """Images of latents as ``(B, S, S, 3)`` uint8 (from the generator's [-1, 1] range)."""
    x = gen(z).clamp_(-1, 1).add_(1).mul_(127.5).round_()
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
