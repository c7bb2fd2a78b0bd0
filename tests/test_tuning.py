"""Choosing the synthetic share on validation (facebalance.tuning)."""

from __future__ import annotations

import pytest

from facebalance.errors import FacebalanceError
from facebalance.tuning import pick_share, share_table


def _guard(flagged: bool, deo: float, ap: float = 0.0) -> dict:
    return {"gan_complement": {"flagged": flagged, "reasons": "DEO worse" if flagged else "",
                               "ap": {"diff": ap, "ci95": {"lo": ap - 0.01, "hi": ap + 0.01}},
                               "deo": {"diff": deo, "ci95": {"lo": deo - 0.02,
                                                             "hi": deo + 0.02}}}}


def test_the_lowest_val_deo_among_unflagged_shares_wins() -> None:
    guards = {1.0: _guard(True, -0.09), 0.25: _guard(False, -0.02), 0.5: _guard(False, -0.05)}
    table = share_table(guards, "gan_complement", "deo")
    assert table["share"].tolist() == [0.25, 0.5, 1.0]
    assert table["val_d_ap"].tolist() == [0.0, 0.0, 0.0]
    # 1.0 has the lowest DEO but the guard flags it (e.g. AP lost): 0.5 is chosen.
    assert pick_share(table, "deo") == 0.5
    assert pick_share(share_table({0.5: _guard(True, 0.1)}, "gan_complement", "deo"),
                      "deo") is None


def test_a_run_without_the_strategy_is_named() -> None:
    with pytest.raises(FacebalanceError, match=r"synthetic_share 0\.5 has no validation guard "
                       r"for 'gan_complement'"):
        share_table({0.5: {}}, "gan_complement", "deo")
