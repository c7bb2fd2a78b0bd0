import numpy as np
import pandas as pd
import pytest

from facebalance.data.synthfaces import (
    AGE_BINS,
    HAIR_EDGE,
    SplitSpec,
    public_columns,
    render,
    sample_attributes,
)
from facebalance.errors import FacebalanceError


def test_skewed_split_has_exact_cell_counts() -> None:
    spec = SplitSpec(n=10000, p_protected=0.42, p_target_given=(0.24, 0.02))
    df = sample_attributes(spec, 0)
    p_blond = df.groupby("male")["blond"].mean()
    assert p_blond[0] == pytest.approx(0.24, abs=1e-3)
    assert p_blond[1] == pytest.approx(0.02, abs=1e-3)
    assert df["male"].mean() == pytest.approx(0.42, abs=1e-3)
    assert len(df) == 10000 and df["id"].is_unique


def test_balanced_split_has_equal_cells() -> None:
    df = sample_attributes(SplitSpec(n=400, balanced=True, target="smiling",
                                     protected="eyeglasses"), 1, "val")
    counts = df.groupby(["eyeglasses", "smiling"]).size()
    assert counts.tolist() == [100, 100, 100, 100]
    assert df["id"].str.startswith("val-").all()


def test_identities_keep_their_attributes_and_size() -> None:
    df = sample_attributes(SplitSpec(n=2000, images_per_identity=4), 3)
    per_id = df.groupby("identity").agg(
        n=("id", "size"), blond=("blond", "nunique"), male=("male", "nunique"),
        skin=("skin", "nunique"), hair=("_hair_u", "nunique"))
    assert per_id["n"].max() == 4
    assert (per_id[["blond", "male", "skin", "hair"]] == 1).all().all()


def test_attribute_ranges() -> None:
    df = sample_attributes(SplitSpec(n=3000), 2)
    assert set(df["skin"].unique()) == {0, 1, 2, 3}
    assert df["age"].between(18, 80).all()
    assert (df["age_group"] == np.digitize(df["age"], AGE_BINS)).all()
    assert set(df["age_group"].unique()) == {0, 1, 2, 3}
    assert not any(c.startswith("_") for c in public_columns(df).columns)


def test_sampling_and_render_are_deterministic() -> None:
    spec = SplitSpec(n=64, balanced=True)
    a, b = sample_attributes(spec, 7), sample_attributes(spec, 7)
    pd.testing.assert_frame_equal(a, b)
    assert not sample_attributes(spec, 8)["_hair_u"].equals(a["_hair_u"])
    img1, img2 = render(a, 32, 5), render(a, 32, 5)
    assert img1.dtype == np.uint8 and img1.shape == (64, 32, 32, 3)
    np.testing.assert_array_equal(img1, img2)
    assert render(a.iloc[:4], 128, 0).shape == (4, 128, 128, 3)


def test_attributes_are_visible_in_pixels() -> None:
    """Blond hair is lighter and more yellow; men's faces are wider; averaged over faces."""
    df = sample_attributes(SplitSpec(n=800, balanced=True), 4)
    img = render(df, 32, 0).astype(np.float64) / 255
    top = img[:, 2:9, 8:24]  # hair region above the forehead
    yellow = (top[..., 0] + top[..., 1] - 2 * top[..., 2]).mean(axis=(1, 2))
    blond = df["blond"].to_numpy() == 1
    assert yellow[blond].mean() > yellow[~blond].mean() + 0.05
    # Long hair (mostly women) frames the face: cheek-side columns differ from background.
    lengths = df.loc[df["male"] == 0, "_long_hair"].mean(), df.loc[df["male"] == 1,
                                                                     "_long_hair"].mean()
    assert lengths[0] > 0.85 and lengths[1] < 0.15


def test_bad_attribute_names() -> None:
    with pytest.raises(FacebalanceError, match="unknown attribute 'hat'"):
        sample_attributes(SplitSpec(n=8, target="hat"), 0)
    with pytest.raises(FacebalanceError, match="must differ"):
        sample_attributes(SplitSpec(n=8, target="male", protected="male"), 0)


SHARES = (0.55, 0.25, 0.12, 0.08)


def test_four_skin_groups_with_given_shares_and_target_rates() -> None:
    spec = SplitSpec(n=8000, target="blond", protected="skin", skin_shares=SHARES,
                     p_target_given=(0.3, 0.15, 0.06, 0.03))
    df = sample_attributes(spec, 5)
    assert (df["skin"].value_counts(normalize=True).sort_index().to_numpy()
            == pytest.approx(SHARES, abs=1e-3))
    assert (df.groupby("skin")["blond"].mean().to_numpy()
            == pytest.approx([0.3, 0.15, 0.06, 0.03], abs=1e-3))
    per_id = df.groupby("identity")[["skin", "blond"]].nunique()
    assert (per_id == 1).all().all()  # skin stays an identity attribute
    balanced = sample_attributes(SplitSpec(n=800, target="blond", protected="skin",
                                           balanced=True), 6, "test")
    assert balanced.groupby(["skin", "blond"]).size().tolist() == [100] * 8


def test_skin_as_target_and_groups() -> None:
    df = sample_attributes(SplitSpec(n=1000, target="skin", protected="skin",
                                     skin_shares=SHARES), 7)
    assert df["skin"].value_counts().sort_index().tolist() == [550, 250, 120, 80]
    with pytest.raises(FacebalanceError, match="a skin target needs skin as the protected"):
        sample_attributes(SplitSpec(n=10, target="skin", protected="male"), 0)


def test_utkface_age_profile_is_young_and_balanced_eval_is_uniform() -> None:
    young = sample_attributes(SplitSpec(n=6000, target="age", protected="",
                                        age_profile="utkface"), 8)
    share = young["age"].between(20, 35).mean()
    assert share > 0.5 and (young["age"] >= 60).mean() < 0.12
    flat = sample_attributes(SplitSpec(n=6000, target="age", protected="",
                                       age_profile="utkface", balanced=True), 8)
    assert flat["age"].between(20, 35).mean() < 0.3 and (flat["age"] >= 60).mean() > 0.2


def test_blond_cue_pulls_hair_lightness_to_the_edge_and_keeps_the_labels() -> None:
    spec = SplitSpec(n=400)
    base = sample_attributes(spec, seed=3)
    faint = sample_attributes(SplitSpec(n=400, blond_cue=0.4), seed=3)
    assert faint["blond"].equals(base["blond"]) and faint["male"].equals(base["male"])
    u0, u1 = base["_hair_u"].to_numpy(), faint["_hair_u"].to_numpy()
    assert np.allclose(u1 - HAIR_EDGE, 0.4 * (u0 - HAIR_EDGE), atol=1e-6)
    # Blond hair stays above the edge's overlap and the rest below it, only closer.
    blond = base["blond"].to_numpy() == 1
    assert u1[blond].min() >= HAIR_EDGE - 0.4 * 0.03 - 1e-6
    assert np.ptp(u1) < 0.5 * np.ptp(u0)
