"""DCGAN generator and discriminator, an EMA-smoothed training loop, generator checkpoints.

The classic batch-norm DCGAN at width 32 was measured far better on a few CPU minutes than
a spectral-norm discriminator (../shared/MEASURED.md): it draws recognisable faces with hair
colour and length after ~3 minutes at 32x32. The generator that later stages use is the
exponential moving average of the trained one, which is smoother and more stable.
A user's pretrained generator (a facebalance checkpoint, a torch.export ``.pt2``, ONNX, or
legacy TorchScript) can replace training: see :func:`load_generator`.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.distributed import world
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
    rank, size = world()
    loader, sampler = make_loader(dataset, train.batch_size, shuffle=True, seed=train.seed,
                                  rank=rank, world=size)
    # Data-parallel: DDP all-reduces the gradients of G and of D's own step. G's step runs
    # D's module itself (its gradients into D are dropped at D's next step anyway).
    gen_net, disc_net = (gen, disc) if size == 1 else (_ddp(gen, device), _ddp(disc, device))
    part = slice(rank, None, size)  # this rank's rows of every global batch
    history: list[dict[str, float]] = []
    window = np.zeros(4)
    # Each step's (d_loss, g_loss, D(real), D(fake)) stays on the device until the next
    # logging step reads the window back at once: no host sync per step.
    pending: list[torch.Tensor] = []
    step, epoch, start = 0, 0, time.perf_counter()
    while step < train.steps:
        sampler.set_epoch(epoch)
        epoch += 1
        for (x, _), n in zip(loader, sampler.global_sizes(), strict=True):
            if step >= train.steps:
                break
            real = to_float(to_device(x, device))
            # The global batch's draws, this rank's rows of them: the flips and latents of
            # one process (one rank: all of them, as before data parallelism).
            flip = torch.rand(n, device=device)[part] < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
            z = torch.randn(n, cfg.latent_dim, device=device)[part]
            with autocast(precision, device):
                fake = gen_net(z)
                d_real, d_fake = disc_net(real), disc_net(fake.detach())
            # .float(): the losses in float32 (no-ops returning the tensors in fp32).
            d_real, d_fake = d_real.float(), d_fake.float()
            if size == 1:
                loss_d = (bce(d_real, torch.ones_like(d_real))
                          + bce(d_fake, torch.zeros_like(d_fake)))
            else:  # DDP averages over ranks: each rank's sum over the global batch's rows
                loss_d = (bce(d_real, torch.ones_like(d_real), reduction="sum")
                          + bce(d_fake, torch.zeros_like(d_fake), reduction="sum")) * (size / n)
            opt_d.zero_grad(set_to_none=True)
            backward_step(loss_d, opt_d, scaler_d)
            with autocast(precision, device):
                d_gen = disc(fake)
            d_gen = d_gen.float()
            loss_g = (bce(d_gen, torch.ones_like(d_gen)) if size == 1 else
                      bce(d_gen, torch.ones_like(d_gen), reduction="sum") * (size / n))
            opt_g.zero_grad(set_to_none=True)
            backward_step(loss_g, opt_g, scaler_g)
            _ema_update(ema, gen, train.ema if step > 100 else 0.0)
            step += 1
            if size == 1:
                pending.append(torch.stack([loss_d.detach(), loss_g.detach(),
                                            torch.sigmoid(d_real.detach()).mean(),
                                            torch.sigmoid(d_fake.detach()).mean()]))
            else:  # this rank's shares, summed over the ranks at the read-back
                pending.append(torch.stack([loss_d.detach() / size, loss_g.detach() / size,
                                            torch.sigmoid(d_real.detach()).sum() / n,
                                            torch.sigmoid(d_fake.detach()).sum() / n]))
            if step % train.log_every == 0 or step == train.steps:
                first = step - len(pending) + 1
                values = torch.stack(pending)
                if size > 1:  # every rank checks and logs the same numbers
                    torch.distributed.all_reduce(values)
                for i, row in enumerate(values.tolist()):
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


def _ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DDP, batch norm synchronized across ranks on CUDA (SyncBatchNorm);
    on CPU each rank normalizes its own rows."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(model),
                                       device_ids=[device.index])
    return DistributedDataParallel(model)


def save_generator(path: str | Path, gen: Generator, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "config", "meta"}`` atomically."""
    save_model(path, gen, asdict(gen.cfg), meta)


#: Why an ONNX generator cannot be optimised through.
ERR_NO_GRADIENTS = ("{path} is an ONNX generator, run by onnxruntime without gradients, so no "
                    "latent can be optimised through it; set invert.method: encoder (or "
                    "invert.steps: 0), or export the generator with torch.export (.pt2)")


class ForeignGenerator(nn.Module):
    """A user's exported generator (torch.export, ONNX or TorchScript) as the latent stages
    see a generator: ``forward(z)`` gives ``(B, 3, S, S)`` images in [-1, 1] and ``cfg`` its
    latent and image sizes.

    A program exported for one fixed batch size runs the latents in chunks of that size (the
    last one padded). ``differentiable`` is False for ONNX (onnxruntime has no gradients):
    sampling, complements, interpolation and guided walks work, latent optimisation does not.
    """

    def __init__(self, source: nn.Module | Callable[[np.ndarray], np.ndarray], *, path: Path,
                 fmt: str, latent_dim: int, image_size: int, batch: int | None = None
                 ) -> None:
        super().__init__()
        # A module is registered (``.to`` moves its weights); onnxruntime's run is not one.
        self.module = source if isinstance(source, nn.Module) else None
        self._run = None if isinstance(source, nn.Module) else source
        self.path, self.format, self.batch = path, fmt, batch
        #: ONNX whose external data was packed: the packed model and True (None otherwise:
        #: the file itself is the model, and the bytes are not held for the stage's life).
        self.portable: tuple[bytes, bool] | None = None
        self.differentiable = self.module is not None
        self.cfg = GanConfig(image_size=image_size, latent_dim=latent_dim, width=0)

    def train(self, mode: bool = True) -> ForeignGenerator:
        # The graph was exported as it is (batch norm in eval mode); torch.export's modules
        # refuse train() and eval(), so the mode is recorded here and not passed on.
        self.training = mode
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.batch is None:
            return self._call(z)
        parts = []
        for s in range(0, len(z), self.batch):
            part = z[s:s + self.batch]
            pad = self.batch - len(part)
            parts.append(self._call(torch.cat([part, part.new_zeros(pad, part.shape[1])])
                                    if pad else part)[:len(part)])
        return torch.cat(parts)

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        if self.module is not None:
            return self.module(z)
        if torch.is_grad_enabled() and z.requires_grad:
            raise FacebalanceError(ERR_NO_GRADIENTS.format(path=self.path))
        out = self._run(np.ascontiguousarray(z.detach().float().cpu().numpy()))
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(z.device)


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   latent_dim: int | None = None) -> nn.Module:
    """Load a generator: a facebalance checkpoint or a user's exported one.

    Formats, told apart by the file's content (``train_gan`` copies an adopted generator to
    ``models/gan/generator.pt`` whatever its suffix):

    - a facebalance checkpoint (``torch.save`` of state dict + config), loaded with
      ``weights_only=True``; with a mapping network it is seen as its
      :class:`WSpaceGenerator` (latents are w);
    - a ``torch.export`` program (``.pt2``, :func:`torch.export.save` of the generator in eval
      mode), checked for pickled or compiled entries first
      (:func:`facebalance.model_files.check_pt2`);
    - ONNX (``.onnx``; weights in an external data file beside it are packed in,
      :func:`facebalance.model_files.portable_onnx`), run by onnxruntime (``pip install
      facebalance[onnx]``) on the CPU, without gradients;
    - TorchScript (``torch.jit.save``), legacy.

    Exported generators must map ``(B, latent_dim)`` float latents to ``(B, 3, S, S)`` images
    in [-1, 1]; a latent size the file declares must equal ``latent_dim`` (TorchScript declares
    none: pass it). No Python code from the file is run.

    Raises
    ------
    FacebalanceError
        A missing file, one in no format above, a latent size that disagrees, an output that
        is not square RGB images, or pickled entries in a ``.pt2``.
    """
    from facebalance.model_files import is_pt2

    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"generator checkpoint {path} does not exist")
    if is_pt2(path):
        return _exported_generator(path, torch.device(device), latent_dim)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        refused = None
    except Exception as err:  # not a plain state dict: maybe TorchScript or ONNX
        ckpt, refused = None, err
    if isinstance(ckpt, dict) and {"state_dict", "config"} <= set(ckpt):
        gen = Generator(GanConfig(**ckpt["config"]))
        gen.load_state_dict(ckpt["state_dict"])
        gen = gen.to(device).eval()
        # The latent stages work in w when the generator has a mapping network.
        return WSpaceGenerator(gen) if gen.mapping is not None else gen
    if refused is None:  # plain tensors, but not ours (a bare state dict has no architecture)
        raise FacebalanceError(
            f"{path} holds tensors but is no facebalance generator checkpoint (a dict with "
            "'state_dict' and 'config'); save {'state_dict': G.state_dict(), 'config': "
            "dataclasses.asdict(G.cfg)} or export the generator with torch.export (.pt2)")
    neither = (f"{path} is neither a facebalance generator checkpoint nor a torch.export "
               "program, ONNX or TorchScript")
    # TorchScript's own unpickler takes TorchScript types only; any other pickle that imports
    # or calls objects is never unpickled.
    unsafe = FacebalanceError(UNSAFE_PICKLE.format(what="generator", path=path))
    if not zipfile.is_zipfile(path):  # torch's formats are zip archives; ONNX is protobuf
        if holds_pickled_code(path):
            raise unsafe
        return _onnx_generator(path, latent_dim, neither)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream, still common
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        if holds_pickled_code(path):
            raise unsafe from None
        raise FacebalanceError(f"{neither} ({first_line(refused or err)})") from None
    if latent_dim is None:
        raise FacebalanceError(f"{path} is TorchScript: set gan.latent_dim to its latent size")
    return _checked(ForeignGenerator(module.eval(), path=path, fmt="torchscript",
                                     latent_dim=latent_dim, image_size=0), device)


def _declared(path: Path, shape: Sequence[object], latent_dim: int | None
              ) -> tuple[int, int | None]:
    """The latent size (checked against ``latent_dim``) and the fixed batch size (None when
    dynamic) of a generator's declared input shape."""
    if len(shape) != 2:
        raise FacebalanceError(f"{path}: a generator takes (B, latent_dim) latents; its input "
                               f"has shape {list(shape)}")
    dim = shape[1] if isinstance(shape[1], int) else latent_dim
    if dim is None or (latent_dim is not None and dim != latent_dim):
        raise FacebalanceError(f"{path} takes {dim}-d latents but gan.latent_dim is "
                               f"{latent_dim}; set gan.latent_dim: {dim}")
    return dim, shape[0] if isinstance(shape[0], int) else None


def _exported_generator(path: Path, device: torch.device, latent_dim: int | None
                        ) -> nn.Module:
    from facebalance.model_files import load_pt2

    program = load_pt2(path, who="gan.checkpoint")
    inputs = [n for n in program.graph.nodes
              if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1:
        raise FacebalanceError(f"{path}: a generator takes one input (latents); this program "
                               f"takes {len(inputs)}")
    value = inputs[0].meta.get("val")
    dim, batch = _declared(path, [d if isinstance(d, int) else None for d in value.shape]
                           if value is not None else [None, None], latent_dim)
    if device.type != "cpu":  # constants the graph creates move too, not only the weights
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    return _checked(ForeignGenerator(program.module(), path=path, fmt="pt2", latent_dim=dim,
                                     image_size=0, batch=batch), device)


def _onnx_generator(path: Path, latent_dim: int | None, neither: str) -> nn.Module:
    try:
        import onnx  # noqa: F401  (packs external data: portable_onnx)
        import onnxruntime as ort
    except ImportError:
        raise FacebalanceError(f"{neither}; if it is ONNX, install onnxruntime and onnx: pip "
                               "install facebalance[onnx]") from None
    from facebalance.model_files import portable_onnx

    # Run from bytes holding every weight: the generator file train_gan writes is these bytes.
    data, packed = portable_onnx(path, who="generator")
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise FacebalanceError(f"{neither} (onnxruntime: {first_line(err)})") from None
    first = session.get_inputs()[0]
    dim, batch = _declared(path, list(first.shape), latent_dim)
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32
    gen = ForeignGenerator(lambda z: session.run(None, {first.name: z.astype(dtype)})[0],
                           path=path, fmt="onnx", latent_dim=dim, image_size=0, batch=batch)
    gen.portable = (data, True) if packed else None
    return _checked(gen, torch.device("cpu"))


def _checked(gen: ForeignGenerator, device: str | torch.device) -> ForeignGenerator:
    """``gen`` on ``device``, with the image size its output shows (checked to be square RGB
    images)."""
    gen = gen.to(device).eval()
    n = gen.batch or 2
    with torch.no_grad():
        try:
            out = gen(torch.zeros(n, gen.cfg.latent_dim, device=device))
        except FacebalanceError:
            raise
        except Exception as err:  # torch and onnxruntime raise their own types
            raise FacebalanceError(f"{gen.path} rejects ({n}, {gen.cfg.latent_dim}) latents: "
                                   f"{first_line(err)}") from None
    if out.ndim != 4 or out.shape[:2] != (n, 3) or out.shape[2] != out.shape[3]:
        raise FacebalanceError(
            f"{gen.path}: expected (B, 3, S, S) images from (B, {gen.cfg.latent_dim}) "
            f"latents, got {tuple(out.shape)}")
    gen.cfg = GanConfig(image_size=int(out.shape[2]), latent_dim=gen.cfg.latent_dim, width=0)
    return gen


@torch.no_grad()
def generate_uint8(gen: nn.Module, z: torch.Tensor) -> np.ndarray:
    """Images of latents as ``(B, S, S, 3)`` uint8 (from the generator's [-1, 1] range)."""
    x = gen(z).clamp_(-1, 1).add_(1).mul_(127.5).round_()
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
