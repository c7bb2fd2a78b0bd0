"""The ``facebalance`` command: information, sample grids, params checks, metrics tables,
face-pair verification."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from facebalance import __version__
from facebalance.errors import FacebalanceError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="facebalance: fair face-attribute models by balancing training data.")


def _fail(err: FacebalanceError) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


@app.command()
def info() -> None:
    """Versions, device and the available datasets, strategies and architectures."""
    import torch

    from facebalance.config import ARCHS, DATASETS, STRATEGIES

    typer.echo(f"facebalance {__version__}")
    typer.echo(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    typer.echo(f"datasets: {', '.join(DATASETS)}")
    typer.echo(f"strategies: {', '.join(STRATEGIES)}")
    typer.echo(f"classifiers: {', '.join(ARCHS)}")


@app.command()
def render(
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("grid.png"),
    n: Annotated[int, typer.Option(help="number of faces", min=1, max=4096)] = 64,
    size: Annotated[int, typer.Option(help="image side: 32, 64 or 128")] = 64,
    seed: Annotated[int, typer.Option(help="random seed", min=0)] = 0,
    scale: Annotated[int, typer.Option(help="pixel upscaling for viewing", min=1, max=8)] = 2,
    labels: Annotated[bool, typer.Option(help="also write <out>.csv of the attributes")] = True,
) -> None:
    """Write a grid of synthfaces samples (balanced over blond x male) to look at."""
    from facebalance.data import synthfaces
    from facebalance.data.shards import atomic_write_bytes
    from facebalance.figures import image_grid, save_png

    if size not in (32, 64, 128):
        _fail(FacebalanceError(f"--size {size} is invalid; valid values: 32, 64, 128"))
    csv = out.with_suffix(".csv")
    table = synthfaces.sample_attributes(synthfaces.SplitSpec(n=n, balanced=True), seed, "grid")
    public = synthfaces.public_columns(table)
    for path in (out, csv) if labels else (out,):
        if path.is_dir():
            _fail(FacebalanceError(f"render: {path} is a directory; give a file name (--out)"))
    header = ",".join(public.columns)
    if labels and csv.is_file() and _first_line(csv) != header:
        # A file of the user's that happens to share the grid's name: never overwritten.
        _fail(FacebalanceError(
            f"render: {csv} exists and is not an attributes file render wrote (its first line "
            "differs); it would be overwritten: give another --out, or --no-labels"))
    images = synthfaces.render(table, size, seed + 1)
    save_png(image_grid(images, int(np.ceil(np.sqrt(n)))), out, scale)
    if labels:
        atomic_write_bytes(csv, public.to_csv(index=False).encode())
    typer.echo(f"wrote {out} ({n} faces, {size}px)" + (f" and {csv} (their attributes)"
                                                       if labels else ""))


def _first_line(path: Path) -> str:
    """The first line of a text file ('' when unreadable as text)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return ""


@app.command("check-params")
def check_params(
    params: Annotated[Path, typer.Argument(help="params file")] = Path("params.yaml"),
) -> None:
    """Validate a params file without running anything."""
    from facebalance.config import load_params

    try:
        load_params(params)
    except FacebalanceError as err:
        _fail(err)
    typer.echo(f"{params}: ok")


@app.command()
def labels(
    name: Annotated[str, typer.Argument(help="celeba, utkface, fairface, lfw or folder")],
    root: Annotated[Path, typer.Argument(help="the dataset folder")],
    target: Annotated[str, typer.Option(help="target column (binary or classes) to "
                                             "tabulate")] = "",
    protected: Annotated[str, typer.Option(help="protected column: 2..K groups")] = "",
    labels_csv: Annotated[str, typer.Option("--labels", help="folder: label CSV")] = "labels.csv",
) -> None:
    """Read a real dataset's label files (no image) and print its splits and columns.

    Use it to choose ``dataset.target`` / ``dataset.protected`` before converting.
    """
    from facebalance.config import DatasetParams
    from facebalance.data.loaders import binary_columns, class_columns, read_labels

    try:
        index = read_labels(DatasetParams(name=name, root=str(root), labels=labels_csv,
                                          target=target, protected=protected))
    except FacebalanceError as err:
        _fail(err)
    rec = index.records
    typer.echo(f"{name}: {len(rec)} images in {index.image_dir} (labels: {index.label_file})")
    typer.echo("splits: " + ", ".join(f"{s} {int((rec['split'] == s).sum())}"
                                      for s in ("train", "val", "test")))
    binary = binary_columns(rec)
    classes = [c for c in class_columns(rec) if c not in binary]
    other = [c for c in rec.columns
             if c not in ("file", "id", "split", "line", *binary, *classes)]
    typer.echo(f"binary columns (target / protected): {', '.join(binary) or '-'}")
    typer.echo(f"class columns (multiclass target / K protected groups): "
               f"{', '.join(classes) or '-'}")
    typer.echo(f"other columns: {', '.join(other) or '-'}")
    for col, names in index.classes.items():
        typer.echo(f"text classes of {col}: " + ", ".join(f"{k} = {v}"
                                                           for k, v in enumerate(names)))
    if index.left_out:
        typer.echo(f"text columns left out: {', '.join(index.left_out)}")
    for kind, entries in index.skipped.items():
        typer.echo(f"skipped ({kind}): {len(entries)}, first: {', '.join(entries[:3])}")
    if target and protected:
        for col in (target, protected):
            if col not in binary + classes:
                _fail(FacebalanceError(
                    f"{col!r} is not a binary or class (0..K-1) column of "
                    f"{index.label_file}; those are: {', '.join(binary + classes) or 'none'}"))
        cells = rec.groupby(["split", protected, target]).size()
        for (split, g, t), n in cells.items():
            typer.echo(f"  {split:<5} {protected}={g} {target}={t}: {n}")
        from facebalance.data.prepare import check_split_labels

        try:
            for split, rows in rec.groupby("split"):
                check_split_labels(rows, target, protected, str(split), index.label_file)
        except FacebalanceError as err:
            _fail(err)


@app.command()
def show(
    metrics: Annotated[Path, typer.Argument(help="a metrics/reports/<strategy>.json file")],
) -> None:
    """Print the headline numbers and per-group rates of one evaluated strategy."""
    try:
        rep = json.loads(metrics.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        _fail(FacebalanceError(f"cannot read {metrics}: {err}"))
    from facebalance.choices import TASK_METRICS
    from facebalance.metrics.compare import fmt

    task = rep.get("task") if isinstance(rep, dict) else None
    kind = task.get("kind", "binary") if isinstance(task, dict) else "binary"
    keys = TASK_METRICS.get(kind, TASK_METRICS["binary"])
    shown = [k for k in keys if isinstance(rep, dict) and isinstance(rep.get(k), dict)
             and {"value", "std", "ci95"} <= set(rep[k])]
    if not shown:
        found = (f"keys {', '.join(map(str, list(rep)[:8]))}" if isinstance(rep, dict) and rep
                 else f"a JSON {type(rep).__name__}" if not isinstance(rep, dict) else "")
        _fail(FacebalanceError(
            f"{metrics} is not an evaluation report (metrics/reports/<strategy>.json): it "
            f"holds {found or 'nothing'}, not the metrics {', '.join(keys)} with value, std "
            "and ci95"))
    for key in shown:
        r = rep[key]
        typer.echo(f"{key:>14}: {fmt(r['value'], 4)} ± {fmt(r['std'], 4)}  "
                   f"95% CI [{fmt(r['ci95']['lo'], 4)}, {fmt(r['ci95']['hi'], 4)}]")
    by_group = rep.get("by_group")
    for group, rates in (by_group.items() if isinstance(by_group, dict) else ()):
        if isinstance(rates, dict):
            typer.echo(f"{group:>14}: " + ", ".join(f"{k} {fmt(v)}" for k, v in rates.items()))


def _preset_command(name: str, params: Path, temp: bool,
                    sets: Sequence[str] = (), exp_name: str = "") -> list[str]:
    """Validate params.yaml with the preset's changes (and ``sets``, ``key=value`` on top of
    them); the ``dvc exp run`` command (experiment ``exp_name``, else the preset's name)."""
    from facebalance.config import parse_params, read_params_data
    from facebalance.presets import apply_changes, parse_sets, preset_changes, set_args

    try:
        changes = {**preset_changes(name), **parse_sets(sets)}
        parse_params(apply_changes(read_params_data(params), changes))
    except FacebalanceError as err:
        raise FacebalanceError(f"preset {name}: {err}") from None
    # Target compare: only the stages the listed strategies need (no GAN stages without a
    # gan_* strategy).
    return ["dvc", "exp", "run", *(["--temp"] if temp else []), "-n", exp_name or name,
            *set_args(changes), "compare"]


def _dvc(cmd: list[str], capture: bool = False) -> subprocess.CompletedProcess:
    """Run a dvc command with this environment's bin folder first on PATH, so that dvc
    and the stages' ``python`` are the ones facebalance is installed in."""
    import os

    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    try:
        return subprocess.run(cmd, env=env, capture_output=capture, text=capture)
    except FileNotFoundError:
        _fail(FacebalanceError(f"{cmd[0]} is not installed here (pip install -e .)"))
        raise  # unreachable: _fail exits


def _run(cmd: list[str]) -> None:
    """:func:`_dvc` with the command echoed; a failure is one line."""
    import shlex

    typer.echo("$ " + shlex.join(cmd))
    code = _dvc(cmd).returncode
    if code != 0:
        _fail(FacebalanceError(f"{shlex.join(cmd[:4])} ... failed (exit {code})"))


@app.command()
def preset(
    name: Annotated[str, typer.Argument(
        help="blond_male, skin4, skin4_guided, race_gender, hard, age or age_smote")],
    params: Annotated[Path, typer.Option(help="the params file the changes apply to")] = Path(
        "params.yaml"),
    temp: Annotated[bool, typer.Option(help="run in a temporary copy (--temp), leaving the "
                                            "workspace as it is")] = True,
    dry_run: Annotated[bool, typer.Option(help="print the command only")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="key=value (YAML value) changed on top of the preset, repeatable: "
                      "--set train_target.seeds=[0]")] = None,
    exp_name: Annotated[str, typer.Option(
        "--name", help="the experiment's name (default: the preset's); a --set variant "
                       "needs its own")] = "",
) -> None:
    """Run a named task as a DVC experiment: ``dvc exp run -n NAME -S key=value ...``.

    The changed params are validated first. Results: ``dvc exp show --md``; a file of the
    experiment: ``git show $(dvc exp show --json ...)`` or ``dvc exp apply NAME``.
    """
    try:
        cmd = _preset_command(name, params, temp, set_ or (), exp_name)
    except FacebalanceError as err:
        _fail(err)
    if dry_run:
        import shlex

        typer.echo(shlex.join(cmd))
        return
    _run(cmd)


@app.command()
def repro(
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Run the presets listed in params (``presets``): ``blond_male`` is ``dvc repro compare
    verify`` of the workspace; every other one a DVC experiment in a temporary copy."""
    from facebalance.config import load_params

    try:
        names = load_params(params).presets
        # blond_male: the attribute pipeline and, beside it on the same images, verification.
        commands = [["dvc", "repro", "compare", "verify"] if n == "blond_male"
                    else _preset_command(n, params, True) for n in names]
    except FacebalanceError as err:
        _fail(err)
    for cmd in commands:
        _run(cmd)


@app.command()
def exps(
    all_columns: Annotated[bool, typer.Option(
        "--all", help="every column, as `dvc exp show` prints it (deps, all params, every "
                      "metric)")] = False,
    as_csv: Annotated[bool, typer.Option(
        "--csv", help="the same columns as CSV in `dvc exp show --csv`'s shape: one row per "
                      "experiment, DVC's column names")] = False,
    metric: Annotated[list[str] | None, typer.Option(
        help="metric per strategy to show (repeat); default: the task's quality and fairness "
             "pair (binary: ap, deo; regression: mae, worst_group_mae)")] = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Experiments side by side on one screen: each strategy's quality and fairness metric
    (AP and DEO for a binary task), verification's AUCs and only the params that differ
    (``dvc exp show --csv`` underneath; ``--csv`` for those columns as CSV, ``--all`` for
    every column)."""
    import csv
    import io

    from facebalance.config import read_params_data
    from facebalance.experiments import exps_csv, exps_table, flat_keys

    try:
        keys = flat_keys(read_params_data(params))
    except FacebalanceError as err:
        _fail(err)
    # --all hands the terminal to DVC (its table, or every column as CSV with --csv).
    proc = _dvc(["dvc", "exp", "show", *(["--csv"] if as_csv or not all_columns else [])],
                capture=not all_columns)
    if proc.returncode != 0:
        _fail(FacebalanceError(f"dvc exp show failed (exit {proc.returncode}): "
                               f"{(proc.stderr or '').strip()[:300]}"))
    if all_columns:
        return
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    picked = tuple(metric) if metric else None
    if as_csv:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(exps_csv(rows, keys, picked))
        typer.echo(out.getvalue(), nl=False)
        return
    table = exps_table(rows, keys, picked)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))] if table else []
    for row in table:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@app.command("choose-share")
def choose_share(
    grid: Annotated[str, typer.Option(help="comma-separated augment.synthetic_share values")
                    ] = "0.25,0.5,1",
    strategy: Annotated[str, typer.Option(help="the GAN strategy judged")] = "gan_complement",
    preset_name: Annotated[str, typer.Option("--preset", help="apply a preset's changes "
                                                             "first (e.g. hard)")] = "",
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
    run: Annotated[bool, typer.Option(help="run the experiments (--no-run: read the ones "
                                           "run before)")] = True,
    dry_run: Annotated[bool, typer.Option(help="print the commands only")] = False,
) -> None:
    """Choose augment.synthetic_share on validation: one DVC experiment per share (baseline
    and the strategy), then the unflagged share with the lowest validation ΔDEO
    (facebalance/tuning.py states the criterion)."""
    import shlex

    from facebalance.choices import GUARD_METRICS
    from facebalance.config import parse_params, read_params_data
    from facebalance.experiments import experiment_file
    from facebalance.presets import apply_changes, preset_changes, set_args
    from facebalance.tuning import pick_share, share_table

    try:
        shares = [float(v) for v in grid.split(",") if v.strip()]
        if not shares or not all(0 < v < float("inf") for v in shares):  # NaN fails too
            raise ValueError
    except ValueError:
        _fail(FacebalanceError(f"--grid {grid!r}: expected positive numbers, e.g. 0.25,0.5,1"))
    try:
        changes = dict(preset_changes(preset_name)) if preset_name else {}
        base = read_params_data(params)
        runs = {s: {**changes, "augment.synthetic_share": s, "strategies": ["baseline", strategy],
                    "compare.references": ["baseline"]} for s in shares}
        # Every experiment's params are validated before the first one starts.
        checked = [parse_params(apply_changes(base, changed)) for changed in runs.values()]
        p = checked[0]
    except FacebalanceError as err:
        _fail(err)
    fairness = GUARD_METRICS[p.task.kind][1]
    names = {s: f"share-{preset_name or 'params'}-{s:g}" for s in shares}
    for share, name in names.items():
        cmd = ["dvc", "exp", "run", "--temp", "-n", name, *set_args(runs[share]), "compare"]
        if dry_run:
            typer.echo(shlex.join(cmd))
        elif run:
            _run(cmd)
    if dry_run:
        return
    try:
        guards = {s: json.loads(experiment_file(n, "metrics/paired.json")).get("val_guard", {})
                  for s, n in names.items()}
        table = share_table(guards, strategy, fairness)
    except FacebalanceError as err:
        _fail(err)
    typer.echo(table.to_string(index=False))
    best = pick_share(table, fairness)
    if best is None:
        typer.echo(f"every share is flagged on validation: do not use {strategy} on this data")
    else:
        typer.echo(f"chosen: augment.synthetic_share = {best:g} (lowest validation "
                   f"Δ{fairness} of the unflagged shares)")


@app.command()
def verify(
    image1: Annotated[Path, typer.Argument(help="first face image")],
    image2: Annotated[Path, typer.Argument(help="second face image")],
    embedder: Annotated[Path, typer.Option(help="embed stage output")] = Path("models/embed"),
    head: Annotated[Path, typer.Option(help="verify stage output")] = Path(
        "models/verify/head.json"),
    params: Annotated[Path, typer.Option(help="params file (how images are prepared)")] = Path(
        "params.yaml"),
    verifier: Annotated[str, typer.Option(help="head (pair features) or cosine")] = "head",
    detect: Annotated[bool, typer.Option(help="with dataset.align: none, look for a face "
                                              "with MTCNN and warn when there is none")] = True,
) -> None:
    """Same person or not: the trained embedder and head on two images, prepared (cropped,
    aligned, resized) as the pipeline prepares its images."""
    import torch

    from facebalance.config import load_params
    from facebalance.data.convert import load_face
    from facebalance.models.dlib_embedder import NoFaceError
    from facebalance.models.embedder import load_embedder
    from facebalance.models.pair_head import load_verifier
    from facebalance.models.verifier import score_pairs

    try:
        if verifier not in ("head", "cosine"):
            raise FacebalanceError(f"--verifier {verifier!r}; valid: head, cosine")
        p = load_params(params)
        d = p.dataset
        model, cfg = load_embedder(embedder)
        pair_head, thresholds = load_verifier(head)
        faces = [load_face(f, cfg.image_size, d.crop, d.align, d.align_margin, d.max_pixels)
                 for f in (image1, image2)]
        vectors = []
        for f, face in zip((image1, image2), faces, strict=True):
            x = torch.from_numpy(np.ascontiguousarray(face[None]).copy())
            try:
                vectors.append(model.embed(x, strict=True) if cfg.model == "dlib"
                               else model.embed(x))
            except NoFaceError:
                raise FacebalanceError(f"{f}: no face found (dlib, embed.align: detect)") from None
        score = float(score_pairs(pair_head, vectors[0], vectors[1])[verifier][0])
    except FacebalanceError as err:
        _fail(err)
    threshold = thresholds[verifier]
    same = score >= threshold
    label = "P(same)" if verifier == "head" else "cosine"
    typer.echo(f"{'same person' if same else 'different people'}: {label} {score:.3f}, "
               f"threshold {threshold:.3f} ({verifier}, chosen on the val pairs)")
    if detect and d.align == "none":  # mtcnn alignment already refused a faceless image
        from facebalance.data.convert import MtcnnDetector, open_rgb

        try:
            finder = MtcnnDetector()
        except ImportError:
            typer.echo("warning: the face check needs facenet-pytorch (make setup installs "
                       "it); the images were not checked for a face (--no-detect)", err=True)
            return
        for f in dict.fromkeys((image1, image2)):
            if finder([open_rgb(f, f.parent, d.max_pixels)])[0] is None:
                typer.echo(f"warning: {f}: MTCNN finds no face in it; the verdict above "
                           "compares whatever the image shows (--no-detect skips this check)",
                           err=True)


@app.command()
def audit(
    predictions: Annotated[Path, typer.Argument(
        help="predictions file (CSV or Parquet), one row per image: true label, score(s), "
             "protected column(s); e.g. the pipeline's data/scores/<strategy>.parquet")],
    label: Annotated[str | None, typer.Option(
        help="true label column: 0/1 (binary), classes (multiclass: numbers or text) or a "
             "number (regression) (default: label)")] = None,
    score: Annotated[list[str] | None, typer.Option(
        "--score", help="score column of one model; repeat it for several (training seeds: "
                        "seed means and std). binary: probability of the positive class in "
                        "[0, 1]; multiclass: the predicted class, or class probabilities "
                        "'p0,p1,p2' in class order; regression: the predicted value "
                        "(default: the pipeline's score_seed<N> / pred_seed<N> columns)")
    ] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="protected column (its values name the groups: female, male); "
                        "repeat it for several, each reported on its own; COLUMN:NAME names "
                        "it NAME in the report. A missing, blank or 'unknown' value counts as "
                        "the group unknown (default: group)")] = None,
    kind: Annotated[str | None, typer.Option(
        help="task kind: binary, multiclass or regression (default: binary)")] = None,
    id_column: Annotated[str | None, typer.Option(
        "--id", help="id column: unique per row, matches the rows of --compare "
                     "(default: id, used when present)")] = None,
    split: Annotated[str | None, typer.Option(
        help="split column: 'test' rows are measured, 'val' rows calibrate the threshold, "
             "'train' rows give the label x group counts of BA; without the column every "
             "row is a test row (default: split)")] = None,
    val: Annotated[Path | None, typer.Option(
        help="validation predictions file (same columns): calibrates the binary threshold "
             "as the pipeline does (#predicted positives = #true positives)")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="binary decision threshold of every model, instead of calibrating it; with "
             "neither this nor validation rows it is calibrated on the test rows (the "
             "report says so)")] = None,
    train: Annotated[Path | None, typer.Option(
        help="training labels file (label and group columns, one row per training image): "
             "the label x group counts bias amplification (BA) is signed by; without it "
             "BA is null")] = None,
    compare: Annotated[Path | None, typer.Option(
        help="a second predictions file on the same test ids (e.g. before a fix): paired "
             "differences this - that on shared bootstrap resamples")] = None,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="a row without a group value is an error naming the "
                                     "row (default: no-strict: group 'unknown')")] = None,
    name: Annotated[str | None, typer.Option(
        help="the model's name in the report (default: the file's name)")] = None,
    age_bins: Annotated[str | None, typer.Option(
        help="regression: also group by these bins of the label, e.g. 20,30,40,50")] = None,
    images: Annotated[str | None, typer.Option(
        help="column of image file paths (relative to the predictions file): draws "
             "<group>_gallery.png, each group's most confidently wrong test faces; only the "
             "faces shown are read")] = None,
    shards: Annotated[Path | None, typer.Option(
        help="facebalance shard folder holding the test images (e.g. data/prepared/test), "
             "rows matched by --id: another image source of the gallery")] = None,
    gallery: Annotated[int | None, typer.Option(
        help="gallery faces per kind of mistake (false negatives, false positives) and "
             "group (default: 6)", min=1, max=50)] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML file of these options (keys: label, score, group, kind, id, split, "
             "threshold, val, train, compare, strict, name, bootstrap, seed, kl_bins, "
             "age_bins, images, shards, gallery); options given here win")] = None,
    out: Annotated[Path, typer.Option(
        help="folder to write <group>.json, audit.md and the PNG figures into")] = Path(
        "audit"),
    bootstrap: Annotated[int | None, typer.Option(
        help="bootstrap resamples of the test rows (default: 500)", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="bootstrap seed (default: 0)")] = None,
    kl_bins: Annotated[int | None, typer.Option(
        help="histogram bins of the KL metric (default: 50)", min=2)] = None,
) -> None:
    """Fairness report of your own model from its predictions: the report, markdown table
    and figures `evaluate` writes for a strategy, per protected column."""
    from facebalance.audit import audit_command

    _quiet_undefined()
    try:
        reports = audit_command(
            predictions, out, config=config, label=label, score=score, group=group,
            kind=kind, id=id_column, split=split, val=val, threshold=threshold, train=train,
            compare=compare, strict=strict, name=name, age_bins=age_bins,
            bootstrap=bootstrap, seed=seed, kl_bins=kl_bins, images=images, shards=shards,
            gallery=gallery)
    except FacebalanceError as err:
        _fail(err)
    _show_audit(out, reports)


def _quiet_undefined() -> None:
    """An undefined metric (a group without positives) is NaN and reported as n/a: numpy's
    and matplotlib's warnings about it would only repeat that, as tracebacks-like noise."""
    import warnings

    for message in ("All-NaN slice encountered", "Mean of empty slice",
                    "Degrees of freedom <= 0 for slice"):
        warnings.filterwarnings("ignore", message, RuntimeWarning)
    warnings.filterwarnings("ignore", "No artists with labels found", UserWarning)


def _show_audit(out: Path, reports: dict) -> None:
    """Print an audit's markdown, its warnings (stderr) and the files it wrote."""
    typer.echo((out / "audit.md").read_text())
    for rep in reports.values():
        for warning in rep["audit"]["warnings"]:
            typer.echo(f"warning: {warning}", err=True)
    from facebalance.audit import report_file

    typer.echo(f"wrote {out}/: " + ", ".join(report_file(a) for a in reports) + ", audit.md")


@app.command("audit-model")
def audit_model(
    model: Annotated[Path, typer.Argument(
        help="model file: a torch.export program (.pt2), an ONNX model (.onnx, needs "
             "onnxruntime: pip install facebalance[onnx]) or, legacy, TorchScript (.pt). "
             "Trust: the file's graph of tensor operations runs, never Python code from it; "
             "a .pt2 with pickled entries (which torch.export.load would unpickle) or "
             "compiled code is refused")],
    data: Annotated[Path, typer.Option(
        help="prepared dataset: shard folders train/, val/, test/ as `prepare` writes them "
             "(data/prepared): test is scored and audited, val calibrates the threshold, "
             "train gives BA its label x group counts")],
    label: Annotated[str | None, typer.Option(
        help="true label column of the shards (default: blond, the pipeline's "
             "dataset.target)")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="protected column of the shards; repeat it for several; COLUMN:NAME "
                        "names it NAME (default: male, the pipeline's dataset.protected)")
    ] = None,
    kind: Annotated[str, typer.Option(
        help="task kind: binary, multiclass or regression")] = "binary",
    input_size: Annotated[int | None, typer.Option(
        help="side of the square input the model takes (default: an ONNX model's static "
             "size, else the data's image size); other sizes are resized", min=8, max=2048)
    ] = None,
    mean: Annotated[str, typer.Option(
        help="per-channel mean subtracted from x / 255 (R,G,B or one number); 0.5 with "
             "std 0.5 gives [-1, 1], as the pipeline's models; ImageNet: "
             "0.485,0.456,0.406")] = "0.5,0.5,0.5",
    std: Annotated[str, typer.Option(
        help="per-channel std x / 255 is divided by; ImageNet: 0.229,0.224,0.225")
    ] = "0.5,0.5,0.5",
    output: Annotated[str | None, typer.Option(
        help="what the model outputs: logit (sigmoid, or softmax for multiclass, applied "
             "here), probability, softmax (of its columns; binary: the positive class's) or "
             "value (regression) (default: logit; multiclass softmax; regression value)")
    ] = None,
    index: Annotated[int | None, typer.Option(
        help="output column of the positive class (binary) or the value (regression); "
             "needed when the model has several columns (default: the only one, or column "
             "1 of a 2-column softmax)", min=0)] = None,
    batch_size: Annotated[int, typer.Option(
        help="images per forward pass (the test split is streamed in batches)", min=1,
        max=4096)] = 64,
    threshold: Annotated[float | None, typer.Option(
        help="binary decision threshold, instead of calibrating it on the val split")
    ] = None,
    strict: Annotated[bool, typer.Option(
        "--strict/--no-strict", help="a row without a group value is an error")] = False,
    name: Annotated[str | None, typer.Option(
        help="the model's name in the report (default: the file's name)")] = None,
    out: Annotated[Path, typer.Option(
        help="folder to write <group>.json, audit.md, the PNG figures and "
             "<group>_gallery.png into")] = Path("audit"),
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples of the test rows",
                                           min=1)] = 500,
    seed: Annotated[int, typer.Option(help="bootstrap seed", min=0)] = 0,
    kl_bins: Annotated[int, typer.Option(help="histogram bins of the KL metric", min=2)] = 50,
    gallery: Annotated[int, typer.Option(
        help="gallery faces per kind of mistake and group", min=1, max=50)] = 6,
) -> None:
    """Score a prepared dataset's test split with your exported model file and audit it as
    `audit` does (reports, figures and each group's gallery of its worst mistakes)."""
    from facebalance.audit import MAX_BOOTSTRAP
    from facebalance.audit import audit_model as run_audit_model

    _quiet_undefined()
    try:
        if bootstrap > MAX_BOOTSTRAP:
            raise FacebalanceError(f"audit-model: --bootstrap {bootstrap}; expected an "
                                   f"integer from 1 to {MAX_BOOTSTRAP}")
        reports = run_audit_model(
            model, data, out, label=label, groups=group, kind=kind, input_size=input_size,
            mean=mean, std=std, output=output, index=index, batch_size=batch_size,
            threshold=threshold, strict=strict, name=name, n_bootstrap=bootstrap,
            bootstrap_seed=seed, kl_bins=kl_bins, gallery_k=gallery)
    except FacebalanceError as err:
        _fail(err)
    _show_audit(out, reports)


@app.command("audit-pairs")
def audit_pairs(
    pairs: Annotated[Path, typer.Argument(
        help="pairs file (CSV or Parquet), one row per face pair: id_a, id_b, same (1/0), "
             "score and each face's group columns (<group>_a, <group>_b)")],
    score: Annotated[str | None, typer.Option(
        help="score column, higher = more likely the same person (default: score)")] = None,
    same: Annotated[str | None, typer.Option(
        help="column of 1 (genuine pair) / 0 (impostor pair) (default: same)")] = None,
    id_a: Annotated[str | None, typer.Option(help="first face's id column (default: id_a)")
                    ] = None,
    id_b: Annotated[str | None, typer.Option(help="second face's id column (default: id_b)")
                    ] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="group G whose columns G_a and G_b hold each face's group; repeat "
                        "it for several. A pair counts in a group when both faces are in it")
    ] = None,
    identity_a: Annotated[str | None, typer.Option(
        help="first face's identity column: the bootstrap resamples identities "
             "(default: identity_a, used when present; else the first faces)")] = None,
    split: Annotated[str | None, typer.Option(
        help="split column: 'val' pairs choose the threshold, 'test' pairs are measured "
             "(default: split)")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="the one global threshold (default: most accurate on the val pairs, else on "
             "the test pairs, as the report says)")] = None,
    far: Annotated[list[float] | None, typer.Option(
        "--far", help="false accept rate of a TAR@FAR metric; repeat it "
                      "(default: 0.01 and 0.001)")] = None,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="a face without a group value is an error")] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML file of these options (keys: score, same, id_a, id_b, group, "
             "identity_a, split, threshold, far, strict, bootstrap, seed)")] = None,
    out: Annotated[Path, typer.Option(help="folder to write pairs.json and pairs.md into")
                   ] = Path("audit"),
    bootstrap: Annotated[int | None, typer.Option(
        help="bootstrap resamples (default: 500)", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="bootstrap seed (default: 0)")] = None,
) -> None:
    """Verification audit of your own face verifier from scored pairs: AUC, EER, TAR@FAR and
    per-group FMR / FNMR at one global threshold with max/min ratios, as `verify` reports."""
    from facebalance.audit import audit_pairs_command

    _quiet_undefined()
    try:
        report = audit_pairs_command(
            pairs, out, config=config, score=score, same=same, id_a=id_a, id_b=id_b,
            group=group, identity_a=identity_a, split=split, threshold=threshold, far=far,
            strict=strict, bootstrap=bootstrap, seed=seed)
    except FacebalanceError as err:
        _fail(err)
    typer.echo((out / "pairs.md").read_text())
    for warning in report["audit"]["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {out}/pairs.json, {out}/pairs.md")


def main() -> None:  # pragma: no cover - console entry point
    """Console entry point."""
    try:
        app()
    except FacebalanceError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover - python -m facebalance.cli
    main()
