"""Do the GAN strategies' defaults hold beyond one setting? A sweep of queued DVC experiments.

    python benchmarks/sweep_gan_defaults.py queue     # queue the experiments, run them (-j 1)
    python benchmarks/sweep_gan_defaults.py report    # the markdown table of their results

Each experiment is one synthfaces setting (training-set size, target-cue difficulty, skew)
times one GAN variant, with the strategies ``baseline``, ``gan_complement`` and
``gan_gz_only`` (3 seeds each, as in ``params.yaml``). The report reads each experiment's
``metrics/paired.json`` (paired differences on the same test resamples, seeds resampled),
``metrics/eval/baseline.json``, ``metrics/boundaries.json`` and ``metrics/attr/target.json``
from its git ref, so it works
after the queue has finished (``dvc queue status``), in any later shell.

The settings beside the default one (``make repro``) and the ``hard`` preset, whose
numbers are in the README: a small training set with the CelebA skew, and ``hard`` with a
harder blond cue (``dataset.blond_cue: 0.5``, labellers about 80% accurate).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from facebalance.errors import FacebalanceError
from facebalance.experiments import experiment_file
from facebalance.presets import PRESETS, set_args

STRATEGIES = {"strategies": ["baseline", "gan_complement", "gan_gz_only"],
              "compare.references": ["baseline", "gan_gz_only"]}
HARD = {k: v for k, v in PRESETS["hard"].items() if k.startswith("dataset.")}

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"dataset.n_train": 5000},
    "hardcue": {**HARD, "dataset.blond_cue": 0.5},
    "hard": HARD,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"gan.balance": "none"},
    "balanced": {"gan.balance": "oversample"},
}
# The experiments this script queues by default (the others were measured before: README).
DEFAULT_RUNS = ["small-plain", "small-balanced", "hardcue-plain", "hardcue-balanced",
                "default-balanced"]


def experiment_name(run: str) -> str:
    return f"sweep-{run}"


def changes_of(run: str) -> dict[str, Any]:
    """The dotted-key param changes of ``<setting>-<variant>``."""
    setting, variant = run.split("-")
    return {**SETTINGS[setting], **VARIANTS[variant], **STRATEGIES}


def exp_file(name: str, path: str) -> dict | None:
    """A JSON file of a finished experiment (the newest of that name); None when absent."""
    try:
        return json.loads(experiment_file(name, path))
    except FacebalanceError:
        return None


def _ci(entry: dict) -> str:
    """``diff [lo, hi]``; n/a for a bound JSON holds as null (undefined on a resample)."""
    values = [entry["diff"], entry["ci95"]["lo"], entry["ci95"]["hi"]]
    if any(v is None for v in values):
        return "n/a"
    return "{:+.3f} [{:+.3f}, {:+.3f}]".format(*values)


def report(runs: list[str]) -> str:
    """One markdown row per finished experiment."""
    lines = ["| setting | GAN | blond labeller acc | boundary cos | baseline AP / DEO "
             "| `gan_complement` ΔAP | ΔDEO | vs `gan_gz_only` ΔDEO | `gan_gz_only` ΔDEO "
             "| val guard |", "|" + "---|" * 10]
    for run in runs:
        name = experiment_name(run)
        paired = exp_file(name, "metrics/paired.json")
        if paired is None:
            lines.append(f"| {run} | not finished (`dvc queue status`) |" + " |" * 8)
            continue
        base = exp_file(name, "metrics/eval/baseline.json") or {}
        attr = exp_file(name, "metrics/attr/target.json") or {}
        bounds = exp_file(name, "metrics/boundaries.json") or {}
        gc, gz = paired["gan_complement-vs-baseline"], paired["gan_gz_only-vs-baseline"]
        vs = paired["gan_complement-vs-gan_gz_only"]
        guard = paired["val_guard"]["gan_complement"]
        setting, variant = run.split("-")
        lines.append(
            f"| {setting} | {variant} | {attr.get('accuracy', float('nan')):.3f} "
            f"| {bounds.get('cos_target_protected', float('nan')):+.3f} "
            f"| {_headline(base, 'ap')} / {_headline(base, 'deo')} "
            f"| {_ci(gc['ap'])} | {_ci(gc['deo'])} | {_ci(vs['deo'])} | {_ci(gz['deo'])} "
            f"| {'**flagged**: ' + guard['reasons'] if guard['flagged'] else 'ok'} |")
    return "\n".join(lines)


def _headline(metrics: dict, key: str) -> str:
    value = metrics.get(key)  # a seed mean, or null when undefined
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["queue", "report"])
    parser.add_argument("--runs", nargs="*", default=DEFAULT_RUNS,
                        help="<setting>-<variant> names; settings: " + ", ".join(SETTINGS)
                        + "; variants: " + ", ".join(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1, help="dvc queue start -j")
    args = parser.parse_args()
    if args.action == "report":
        print(report(args.runs))
        return
    for run in args.runs:
        cmd = ["dvc", "exp", "run", "--queue", "-n", experiment_name(run),
               *set_args(changes_of(run)), "compare"]
        print(" ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit(1)
    subprocess.run(["dvc", "queue", "start", "-j", str(args.jobs)], check=True)


if __name__ == "__main__":
    main()
