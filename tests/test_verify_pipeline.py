"""Verification end to end: synthfaces with a trained embedder, the CLI on the result, and
dlib's descriptor on generated pairs (a DVC experiment on the session's pipeline) and on
the LFW-format fixture.

The embedder's quality needs more identities than the session's tiny pipeline has, so
prepare -> embed -> verify runs here on a larger set, in process (DVC runs those stages
in ``binary_project`` and in the dlib experiment).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from facebalance.cli import app
from facebalance.data.shards import read_parquet

from .data.realdata import make_lfw
from .dvcproject import dvc, ran
from .projects import build_inprocess

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 960, "n_val": 320, "n_test": 480, "rows_per_file": 400,
                "row_group_size": 100},
    "embed": {"width": 16, "epochs": 6},
    "verify": {"pairs_per_group": 60, "bootstrap": 50},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verify")
    stages = build_inprocess(root, TINY, "verify")
    assert stages == ["prepare", "embed", "verify"]  # no attribute stage
    return root


def test_outputs_metrics_and_identities_per_split(project: Path) -> None:
    """Both verifiers beat chance on unseen identities; report, ROC, per-group rates;
    ``dvc metrics show`` lists verify.json."""
    head = json.loads((project / "metrics/verify.json").read_text())
    assert set(head) == {"head", "cosine"}
    for v in head.values():
        assert v["auc"] > 0.55  # better than chance on faces never seen in training
        assert {"eer", "f1", "tar_at_far_0.01", "fmr_ratio_skin", "fnmr_ratio_male"} <= set(v)
    report = json.loads((project / "metrics/verify/report.json").read_text())
    assert report["task"] == {"kind": "verification", "pairs": "identities",
                              "groups": ["skin", "male", "age_group"],
                              "groups_missing": []}
    assert set(report["verifiers"]["head"]["by_group"]["skin"]) == {"0", "1", "2", "3"}
    emb = read_parquet(project / "data/embeddings.parquet", ["id", "split", "identity"])
    assert emb.groupby("identity")["split"].nunique().max() == 1
    assert (project / "metrics/verify/roc.png").stat().st_size > 1000
    roc = pd.read_csv(project / "metrics/plots/verify_roc.csv")
    assert set(roc["verifier"]) == {"head", "cosine"}
    diff = dvc(project, "metrics", "show").stdout
    assert "verify.json" in diff and "head.auc" in diff


def _write(project: Path, image_id: str, out: Path) -> Path:
    from facebalance.data.shards import read_columns

    for split in ("test", "val", "train"):
        frame = read_columns(project / "data/prepared" / split, ["id", "image"])
        hit = frame[frame["id"] == image_id]
        if len(hit):
            out.write_bytes(hit["image"].iloc[0])
            return out
    raise AssertionError(image_id)


def test_cli_round_trips_on_one_identity_and_on_two(project: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI prepares an image as the pipeline did: on the test pairs the pipeline scored
    best (a genuine pair) and worst (an impostor pair) it gives the same score and the
    decision at the val threshold."""
    scored = read_parquet(project / "data/verify/test_pairs.parquet")
    genuine = scored[scored["same"] == 1].sort_values("score_head").iloc[-1]
    impostor = scored[scored["same"] == 0].sort_values("score_head").iloc[0]
    monkeypatch.chdir(project)
    runner = CliRunner()
    for row, word in ((genuine, "same person"), (impostor, "different people")):
        a = _write(project, row["id_a"], tmp_path / f"{row['id_a']}.png")
        b = _write(project, row["id_b"], tmp_path / f"{row['id_b']}.png")
        res = runner.invoke(app, ["verify", str(a), str(b)])
        assert res.exit_code == 0, res.output
        assert res.output.startswith(word), res.output
        assert f"P(same) {row['score_head']:.3f}" in res.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    res = runner.invoke(app, ["verify", str(a), str(bad)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: not a readable image")
    res = runner.invoke(app, ["verify", str(a), str(tmp_path / "missing.png")])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert "missing.png: no such file" in res.output


def test_dlib_on_generated_pairs(binary_copy: Path) -> None:
    """dlib's descriptor as a ``dvc exp run --temp`` of the verification stages."""
    pytest.importorskip("dlib")
    # 128 images: dlib embeds ~14 per second per core, and the pairs' metrics are not what
    # this test checks (320 images took 48 s of the suite, 2026-12-06).
    proc = dvc(binary_copy, "exp", "run", "--temp", "-n", "dlib", "-S", "embed.model=dlib",
               "-S", "dataset.n_train=64", "-S", "dataset.n_val=32", "-S",
               "dataset.n_test=32", "-S", "verify.pairs_per_group=20", "verify")
    assert {"prepare", "embed", "verify"} <= ran(proc.stdout)
    assert not ran(proc.stdout) & {"train_attr@target", "train_gan", "compare"}
    shown = json.loads(dvc(binary_copy, "exp", "show", "--json").stdout)
    (exp,) = [rev["data"] for top in shown for e in top.get("experiments") or []
              for rev in e.get("revs", []) if rev.get("name") == "dlib"]
    assert exp["params"]["params.yaml"]["data"]["embed"]["model"] == "dlib"
    head = exp["metrics"]["metrics/verify.json"]["data"]["head"]
    assert 0.0 <= head["auc"] <= 1.0 and 0.0 <= head["fnmr"] <= 1.0


def test_dlib_on_the_lfw_fixture_through_the_loader(tmp_path: Path) -> None:
    """The LFW loader's pairs file through embed (dlib) and verify, groups from a CSV."""
    pytest.importorskip("dlib")
    make_lfw(tmp_path / "lfw")
    groups = pd.DataFrame({"identity": [f"Person_{k:02d}" for k in range(20)] + ["Loner"],
                           "race": ["A", "B"] * 10 + ["A"]})
    groups.to_csv(tmp_path / "groups.csv", index=False)
    root = tmp_path / "project"
    # LFW has no attribute columns: dataset.target / protected are left as they are, unused.
    stages = build_inprocess(root, {
        "dataset": {"name": "lfw", "root": str(tmp_path / "lfw")}, "embed": {"model": "dlib"},
        "verify": {"groups": ["race"], "group_file": str(tmp_path / "groups.csv"),
                   "bootstrap": 20}}, "verify")
    assert stages == ["prepare", "embed", "verify"]
    report = json.loads((root / "metrics/verify/report.json").read_text())
    assert report["task"]["pairs"] == "pairs file"
    assert report["n_pairs"] == {"train": 16, "val": 2, "test": 2}
    # dlib is pretrained: embed only the faces the pairs use (30 of the fixture's 42)
    emb = read_parquet(root / "data/embeddings.parquet", ["id"])
    pairs = read_parquet(root / "data/prepared/pairs.parquet", ["id_a", "id_b"])
    assert set(emb["id"]) == set(pairs["id_a"]) | set(pairs["id_b"]) and len(emb) == 30
    embed = json.loads((root / "metrics/embed.json").read_text())
    assert embed["images_not_in_pairs"] == 12
    assert np.isfinite(report["verifiers"]["head"]["metrics"]["auc"]["value"])
