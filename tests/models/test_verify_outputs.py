"""The verify stage's outputs (models/verify_outputs.py)."""

import json
from pathlib import Path


def test_skipped_verification_writes_every_output(tmp_path: Path) -> None:
    from facebalance.models.verify_outputs import VerifyOutputs

    names = ("model_dir", "scores", "report", "metrics", "table", "roc", "figure")
    out = VerifyOutputs(*(tmp_path / n for n in names))
    out.write_skipped("no pairs")
    assert all((tmp_path / n).exists() for n in names)
    assert json.loads((tmp_path / "metrics").read_text()) == {"skipped": "no pairs"}
    assert (tmp_path / "table").read_text() == "verification skipped: no pairs\n"
