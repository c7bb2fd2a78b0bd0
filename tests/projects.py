"""The tiny projects the slow tests share, and how each is built (once per session).

- :func:`build_binary` -- the one pipeline that runs through ``dvc repro``: synthfaces blond vs
  male, every stage of ``dvc.yaml`` (tiny GAN, inversion, guided directions, embedder), the
  classic and the z/z' strategies; committed to git, so copies of it can run experiments.
  Tests that change a project work on :func:`copy_project` of it.
- :func:`build_inprocess` -- a project whose stages run in the test process
  (:mod:`tests.stagerun`): the task kinds, data formats and strategy families, where what is
  tested is what the stages compute, not what DVC does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from facebalance.presets import PRESETS

from .dvcproject import commit, dvc, new_project, ran
from .stagerun import new_inprocess_project, plan, run_pipeline

# Tiny sizes: a GAN that gives generated images both labels of the tiny plain classifiers
# (the cell-balanced stream of gan.balance auto drew faces they all put in one class, which
# boundaries refuses; the default stream runs in test_gan_budget.py).
GAN_TINY = {
    "train_attr": {"epochs": 6, "width": 8, "batch_size": 32, "lr": 0.01, "balance": "none"},
    "gan": {"steps": 300, "width": 8, "latent_dim": 16, "batch_size": 32, "balance": "none"},
    "sample": {"n": 900, "batch_size": 256},
    "boundaries": {"n_fit": 400, "n_val": 100},
    "complement": {"n_pairs": 400, "batch_size": 256},
    "invert": {"encoder_steps": 40, "encoder_width": 8, "steps": 5, "n_test": 50},
}
BINARY_STRATEGIES = ("baseline", "gan_complement", "gan_gz_only")
BINARY = {
    "dataset": {"n_train": 600, "n_val": 120, "n_test": 240, "rows_per_file": 400,
                "row_group_size": 100},
    **GAN_TINY,
    "strategies": list(BINARY_STRATEGIES),
    "train_target": {"epochs": 1, "width": 8, "seeds": [0, 1]},
    "evaluate": {"bootstrap": 50},
    "guided": {"n_fit": 600, "batch_size": 64},
    # Verification's quality is tested on its own larger set (test_verify_pipeline.py).
    "embed": {"width": 8, "epochs": 2},
    "verify": {"pairs_per_group": 20, "bootstrap": 20},
}
DEFAULT_STRATEGIES = ("baseline", "reweight", "oversample", "mixup", "cutmix",
                      "val_attention", "gan_complement", "gan_gz_only")
GAN_STAGES = {"train_gan", "sample", "score", "boundaries", "complement"}


def merge(base: dict, extra: dict) -> dict:
    """``base`` with each section of ``extra`` merged into it (section by section)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in extra.items():
        out[section] = ({**out.get(section, {}), **values} if isinstance(values, dict)
                        else values)
    return out


def preset(name: str) -> dict:
    """A preset's dotted changes as params sections."""
    out: dict = {}
    for key, value in PRESETS[name].items():
        if "." in key:
            section, k = key.split(".")
            out.setdefault(section, {})[k] = value
        else:
            out[key] = value
    return out


def build_binary(root: Path) -> Path:
    """:data:`BINARY` through ``dvc repro`` (every stage of dvc.yaml), committed."""
    new_project(root, BINARY)
    every = {name for name, _ in plan(root)}
    proc = dvc(root, "repro")
    assert ran(proc.stdout) == every, sorted(every - ran(proc.stdout))
    commit(root, "tiny run")
    return root


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a finished project (workspace, git, DVC cache) that a test may change;
    DVC's temporary files are left behind."""
    shutil.copytree(src, dst, symlinks=True,
                    ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
    return dst


def build_inprocess(root: Path, changes: dict, *targets: str) -> list[str]:
    """A project with ``changes`` whose stages for ``targets`` run in this process; the
    stages run."""
    new_inprocess_project(root, changes)
    return run_pipeline(root, *targets)
