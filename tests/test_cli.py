import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from facebalance.cli import app

from .conftest import REPO
from .data.realdata import make_celeba, make_utkface

runner = CliRunner()


def test_render_writes_a_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["render", "--n", "12", "--size", "32", "--out", str(out),
                                 "--scale", "1"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (4 * 32, 3 * 32)
    assert len(out.with_suffix(".csv").read_text().splitlines()) == 13


def test_render_rejects_bad_size(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "--size", "48", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 1
    assert "--size 48 is invalid; valid values: 32, 64, 128" in result.output


def test_render_never_overwrites_a_csv_it_did_not_write(tmp_path: Path) -> None:
    """``--out victim.png`` would write victim.csv: a user's file of that name is kept."""
    victim = tmp_path / "victim.csv"
    victim.write_text("id,label\n1,0\n")
    args = ["render", "--n", "4", "--size", "32", "--scale", "1", "--out",
            str(tmp_path / "victim.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and victim.read_text() == "id,label\n1,0\n"
    assert f"{victim} exists and is not an attributes file render wrote" in result.output
    assert not (tmp_path / "victim.png").exists()
    victim.unlink()  # then render's own file is replaced by the next run, and named
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"and {victim} (their attributes)" in result.output
    for bad, message in ((["--seed", "-1"], "greater than or equal to 0"),
                         (["--scale", "1000000"], "less than or equal to 8")):
        result = runner.invoke(app, ["render", "--out", str(tmp_path / "g.png"), *bad])
        assert result.exit_code == 2 and message in result.output
    (tmp_path / "dir.png").mkdir()
    result = runner.invoke(app, ["render", "--n", "4", "--size", "32", "--out",
                                 str(tmp_path / "dir.png")])
    assert result.exit_code == 1 and "dir.png is a directory; give a file name" in result.output


def test_check_params(tmp_path: Path) -> None:
    assert runner.invoke(app, ["check-params", str(REPO / "params.yaml")]).exit_code == 0
    bad = tmp_path / "params.yaml"
    bad.write_text("train_target:\n  arch: vgg\n")
    result = runner.invoke(app, ["check-params", str(bad)])
    assert result.exit_code == 1
    assert "train_target.arch = 'vgg' is invalid; valid values: small_resnet" in result.output


def test_info_and_show(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "strategies: baseline, reweight, oversample" in result.output
    rep = {"deo": {"value": 0.1, "std": 0.01, "ci95": {"lo": 0.05, "hi": 0.15}},
           "by_group": {"male=0": {"tpr": 0.9}}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(rep))
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0
    assert "deo: 0.1000 ± 0.0100  95% CI [0.0500, 0.1500]" in result.output


def test_labels_lists_columns_and_cells(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    result = runner.invoke(app, ["labels", "celeba", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "celeba: 30 images" in result.output
    assert "splits: train 18, val 4, test 8" in result.output
    assert "binary columns (target / protected): 5_o_Clock_Shadow," in result.output
    result = runner.invoke(app, ["labels", "celeba", str(tmp_path), "--target", "Blond_Hair",
                                 "--protected", "Male"])
    assert result.exit_code == 0, result.output
    assert "train Male=0 Blond_Hair=" in result.output
    result = runner.invoke(app, ["labels", "celeba", str(tmp_path), "--target", "blond",
                                 "--protected", "Male"])
    assert result.exit_code == 1
    assert "'blond' is not a binary or class (0..K-1) column" in result.output


def test_labels_takes_k_protected_groups(tmp_path: Path) -> None:
    """UTKFace's five race groups are a protected column, as the pipeline uses them."""
    make_utkface(tmp_path)
    result = runner.invoke(app, ["labels", "utkface", str(tmp_path), "--target", "male",
                                 "--protected", "race"])
    assert result.exit_code == 0, result.output
    assert "class columns (multiclass target / K protected groups): age_group, race" \
        in result.output
    assert "train race=4 male=" in result.output


def test_labels_names_a_missing_label_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["labels", "fairface", str(tmp_path)])
    assert result.exit_code == 1
    assert "fairface_label_train.csv not found in" in result.output


def test_show_prints_n_a_for_undefined_metrics(tmp_path: Path) -> None:
    rep = {"kl": {"value": None, "std": None, "ci95": {"lo": None, "hi": None}},
           "by_group": {"male=0": {"tpr": None}}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(rep))
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0
    assert "kl: n/a ± n/a  95% CI [n/a, n/a]" in result.output and "tpr n/a" in result.output


def test_labels_fails_on_a_split_with_one_class(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    attr = tmp_path / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    # The last 8 images are the test split: make every one of them non-blond.
    col = lines[1].split().index("Blond_Hair") + 1
    for k in range(len(lines) - 8, len(lines)):
        parts = lines[k].split()
        parts[col] = "-1"
        lines[k] = " ".join(parts)
    attr.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["labels", "celeba", str(tmp_path), "--target", "Blond_Hair",
                                 "--protected", "Male"])
    assert result.exit_code == 1
    assert "the test split of" in result.output and "(Blond_Hair=0: 8)" in result.output


def test_choose_share_prints_one_experiment_per_share_and_refuses_a_bad_grid() -> None:
    result = runner.invoke(app, ["choose-share", "--preset", "hard", "--grid", "0.25,1",
                                 "--params", str(REPO / "params.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("dvc exp run --temp -n share-hard-0.25 ")
    assert "-S augment.synthetic_share=1.0" in lines[1]
    assert "-S dataset.n_train=9000" in lines[1] and lines[1].endswith(" compare")
    for grid in ("0,x", "nan,0.5", "inf"):
        bad = runner.invoke(app, ["choose-share", "--grid", grid, "--dry-run"])
        assert bad.exit_code == 1 and "expected positive numbers" in bad.output
    # The experiments' params are checked before any runs (or is printed): a typo'd strategy.
    bad = runner.invoke(app, ["choose-share", "--strategy", "nope", "--dry-run", "--params",
                              str(REPO / "params.yaml")])
    assert bad.exit_code == 1 and "nope" in bad.output and "dvc exp run" not in bad.output


def _tiny_verifier(root: Path) -> None:
    """A random small_resnet embedder and a head fitted on its embeddings of random pairs."""
    import numpy as np
    import torch

    from facebalance.models.classifier import SmallResNet
    from facebalance.models.embedder import EmbedderConfig, NetEmbedder, save_embedder
    from facebalance.models.pair_head import fit_pair_head, save_verifier

    torch.manual_seed(0)
    net = NetEmbedder(SmallResNet(16, 1).features, None).eval()
    save_embedder(root / "embed", EmbedderConfig(width=16, dim=64), net, {})
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 64)), rng.normal(size=(40, 64))
    head = fit_pair_head(a, b, np.arange(40) % 2)
    save_verifier(root / "head.json", head, {"head": 0.5, "cosine": 0.1}, {})


def test_verify_prints_a_decision_and_bad_images_are_one_line(tmp_path: Path) -> None:
    import numpy as np

    from facebalance.data import synthfaces

    _tiny_verifier(tmp_path)
    table = synthfaces.sample_attributes(synthfaces.SplitSpec(n=2, balanced=True), 0, "t")
    for i, im in enumerate(synthfaces.render(table, 32, 0)):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    base = ["verify", "--embedder", str(tmp_path / "embed"), "--head",
            str(tmp_path / "head.json"), "--params", str(REPO / "params.yaml")]
    res = runner.invoke(app, [*base, str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(("same person: P(same) ", "different people: P(same) "))
    res = runner.invoke(app, [*base, "--verifier", "cosine", str(tmp_path / "0.png"),
                              str(tmp_path / "0.png")])
    assert res.output.startswith("same person: cosine 1.000"), res.output  # one face twice
    Image.new("RGB", (64, 64), (90, 140, 200)).save(tmp_path / "sky.png")  # no face at all
    res = runner.invoke(app, [*base, str(tmp_path / "0.png"), str(tmp_path / "sky.png")])
    assert res.exit_code == 0
    assert (f"warning: {tmp_path / 'sky.png'}: MTCNN finds no face in it; the verdict above "
            "compares whatever the image shows") in res.output
    res = runner.invoke(app, [*base, "--no-detect", str(tmp_path / "0.png"),
                              str(tmp_path / "sky.png")])
    assert "warning" not in res.output
    for bad, why in (("bad.jpg", "not a readable image"), ("none.png", "no such file")):
        res = runner.invoke(app, [*base, str(tmp_path / "0.png"), str(tmp_path / bad)])
        assert res.exit_code == 1
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / bad}: {why}")
    res = runner.invoke(app, [*base[:2], str(tmp_path / "nothing"), *base[3:],
                              str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert res.exit_code == 1 and "run the embed stage" in res.output
    assert len(np.atleast_1d(res.output.strip().splitlines())) == 1


@pytest.mark.parametrize("content, found", [
    ("[1, 2, 3]", "a JSON list"), ('{"epochs": 3, "loss": 0.1}', "keys epochs, loss"),
    ("{}", "nothing"), ('{"deo": 0.1}', "keys deo"),
])
def test_show_says_what_a_file_is_not(tmp_path: Path, content: str, found: str) -> None:
    path = tmp_path / "train.json"
    path.write_text(content)
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {path} is not an evaluation report "
                                    f"(metrics/reports/<strategy>.json): it holds {found}, not")


def test_exps_prints_the_experiments_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import facebalance.cli

    csv = ("Experiment,rev,base.seed,metrics/eval/baseline.json:deo\n"
           ",workspace,0,0.146\nseed1,1a2b,1,0.1\n")
    calls = []

    def fake_dvc(cmd: list[str], capture: bool = False) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, csv, "")

    monkeypatch.setattr(facebalance.cli, "_dvc", fake_dvc)
    result = runner.invoke(app, ["exps", "--metric", "deo", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert calls == [["dvc", "exp", "show", "--csv"]]
    assert result.output.splitlines() == ["              workspace  seed1",
                                          "baseline deo  0.146      0.100",
                                          "base.seed     0.000      1.000"]


def test_exps_csv_prints_dvc_rows_with_the_table_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import facebalance.cli

    csv = ("Experiment,rev,base.seed,lib/x.py,metrics/eval/baseline.json:deo\n"
           ",workspace,0,abc,0.146\nseed1,1a2b,1,abc,0.1\n")
    calls = []

    def fake_dvc(cmd: list[str], capture: bool = False) -> subprocess.CompletedProcess:
        calls.append((cmd, capture))
        return subprocess.CompletedProcess(cmd, 0, csv if capture else None, "")

    monkeypatch.setattr(facebalance.cli, "_dvc", fake_dvc)
    result = runner.invoke(app, ["exps", "--csv", "--metric", "deo", "--params",
                                 str(REPO / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["Experiment,rev,metrics/eval/baseline.json:deo,"
                                          "base.seed", ",workspace,0.146,0", "seed1,1a2b,0.1,1"]
    # --all --csv: DVC's every column, printed by DVC itself.
    assert runner.invoke(app, ["exps", "--all", "--csv"]).exit_code == 0
    assert calls == [(["dvc", "exp", "show", "--csv"], True),
                     (["dvc", "exp", "show", "--csv"], False)]
