"""Choose the GAN strategies' synthetic share on validation, never on test.

``facebalance choose-share`` runs one DVC experiment per share of a small grid and reads
each one's validation guard (``metrics/paired.json`` → ``val_guard``, written by
``compare``). The criterion, stated once here: among the shares whose strategy the guard
does not flag (validation AP at most ``compare.guard_tolerance`` worse than the baseline's
beyond noise, and the fairness metric not worse beyond noise), the one with the lowest
validation fairness difference against the baseline (ΔDEO for a binary task). When the
guard flags every share, none is chosen: the strategy should not be used on that data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from facebalance.errors import FacebalanceError


def share_table(guards: Mapping[float, Mapping[str, Any]], strategy: str,
                fairness: str) -> pd.DataFrame:
    """One row per share: the guard's verdict and the val differences of ``strategy``.

    Parameters
    ----------
    guards
        share -> the ``val_guard`` dict of that experiment's ``paired.json``.
    strategy
        The strategy judged (e.g. ``gan_complement``).
    fairness
        The fairness metric ranked (e.g. ``deo``).
    """
    rows = []
    for share, guard in sorted(guards.items()):
        if strategy not in guard:
            raise FacebalanceError(
                f"choose-share: the run with synthetic_share {share} has no validation guard "
                f"for {strategy!r}; it needs baseline and {strategy} in strategies")
        g = guard[strategy]
        if fairness not in g:
            raise FacebalanceError(
                f"choose-share: the guard of synthetic_share {share} has no {fairness!r}")
        rows.append({"share": float(share), "flagged": bool(g["flagged"]),
                     "reasons": g.get("reasons", ""), f"val_d_{fairness}": g[fairness]["diff"],
                     **{f"val_d_{m}": v["diff"] for m, v in g.items()
                        if isinstance(v, Mapping) and m != fairness}})
    return pd.DataFrame(rows)


def pick_share(table: pd.DataFrame, fairness: str) -> float | None:
    """The unflagged share with the lowest validation fairness difference (the criterion
    of this module); ``None`` when every share is flagged."""
    ok = table[~table["flagged"]]
    if ok.empty:
        return None
    return float(ok.sort_values([f"val_d_{fairness}", "share"]).iloc[0]["share"])
