"""synthfaces: a vectorized procedural face renderer with known attributes.

Faces are drawn in batches with numpy: every layer (background, long hair, neck, face,
hair cap, eyes, brows, mouth, beard, wrinkles, glasses, lighting, noise, occlusion) is a
soft mask over a ``(B, S, S)`` grid, so there is no per-pixel Python loop. Ground truth:

- ``blond`` (hair colour), ``male`` (gender presentation: jaw, hair length, brows, beard,
  lip colour), ``skin`` (4 tone groups), ``age`` (18-80; grey hair, wrinkles, receding
  hairline, longer face) and ``age_group`` (<30, 30-44, 45-59, 60+), ``smiling``,
  ``eyeglasses``, ``identity`` (fixed geometry, skin and hair per identity; pose,
  lighting, expression, background and noise per image).

:func:`sample_attributes` draws a split's attribute table with a chosen correlation
between a target and a protected attribute; :func:`render` draws the images for a table.
Both are deterministic given their seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from facebalance.errors import FacebalanceError

BINARY_ATTRIBUTES = ("blond", "male", "smiling", "eyeglasses")
IDENTITY_ATTRIBUTES = ("blond", "male")  # fixed per identity; the others vary per image
AGE_BINS = (30.0, 45.0, 60.0)
SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.86, 0.66, 0.52], [0.64, 0.45, 0.31], [0.38, 0.26, 0.18]],
    dtype=np.float32)
# Hair colour is a continuous "lightness" u along a ramp from black to platinum. Blond hair
# has u >= 0.56, other hair u <= 0.62: dark blond and light brown overlap (as CelebA's
# labels do), so with lighting, colour casts and greying, hair colour is learnable but not
# trivial and ambiguous faces invite a classifier to lean on the correlated attribute.
HAIR_RAMP_U = np.array([0.0, 0.2, 0.4, 0.55, 0.7, 0.85, 1.0], dtype=np.float32)
HAIR_RAMP = np.array(
    [[0.08, 0.07, 0.06], [0.22, 0.14, 0.09], [0.38, 0.25, 0.15], [0.52, 0.40, 0.26],
     [0.70, 0.58, 0.34], [0.86, 0.74, 0.42], [0.95, 0.90, 0.68]], dtype=np.float32)
GREY = np.array([0.72, 0.72, 0.74], dtype=np.float32)


#: The 4 skin tone groups (0 = lightest).
SKIN_GROUPS = 4
#: UTKFace-like ages: shares of [18, 20), [20, 30), ..., [70, 80] (most faces 20-35).
UTKFACE_AGE_EDGES = (18.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)
UTKFACE_AGE_SHARES = (0.04, 0.40, 0.26, 0.12, 0.09, 0.05, 0.04)


@dataclass(frozen=True)
class SplitSpec:
    """How to draw one split's attributes.

    Attributes
    ----------
    n
        Number of images.
    target, protected
        Attributes whose joint distribution is controlled: a binary target against a
        binary protected attribute or the 4 skin groups, or skin against itself (a
        multi-class target whose classes are the groups). ``protected`` empty: nothing is
        controlled (regression on age, whose distribution ``age_profile`` sets).
    p_protected
        P(protected = 1) of a binary protected attribute; ignored when ``balanced``.
    p_target_given
        P(target=1 | group) for each protected group; ignored when ``balanced``.
    balanced
        Equal counts in every target x protected cell (val/test), uniform ages.
    images_per_identity
        How many images share one identity.
    skin_shares
        Shares of the skin groups when skin is the protected attribute.
    age_profile
        ``uniform`` (18-80) or ``utkface`` (most faces 20-35, few 60+).
    blond_cue
        How far hair lightness sits from the blond / non-blond edge (1: the default ramp;
        0.5: every face twice as close to the edge, so blond is harder to see and a
        classifier leans more on the correlated attribute).
    """

    n: int
    target: str = "blond"
    protected: str = "male"
    p_protected: float = 0.42
    p_target_given: tuple[float, ...] = (0.24, 0.02)
    balanced: bool = False
    images_per_identity: int = 4
    skin_shares: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    age_profile: str = "uniform"
    blond_cue: float = 1.0


#: Hair lightness edge between non-blond (below) and blond (above); see HAIR_RAMP_U.
HAIR_EDGE = 0.59


def _largest_remainder(probs: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``probs * n``."""
    counts = np.floor(probs * n).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(probs * n - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _cell_counts(spec: SplitSpec) -> np.ndarray:
    """Exact counts per (protected group, target) cell, so a split has the asked skew.

    Shape ``(n_groups, 2)`` for a binary target, ``(n_groups, 1)`` when the target is the
    protected attribute (or nothing is controlled: ``(1, 1)``).
    """
    if not spec.protected:
        return np.array([[spec.n]])
    k = SKIN_GROUPS if spec.protected == "skin" else 2
    t = 1 if spec.target == spec.protected else 2
    if spec.balanced:
        base = np.full(k * t, spec.n // (k * t))
        base[: spec.n % (k * t)] += 1
        return base.reshape(k, t)
    shares = (np.asarray(spec.skin_shares, dtype=np.float64) if k == SKIN_GROUPS
              else np.array([1 - spec.p_protected, spec.p_protected]))
    if t == 1:
        probs = shares
    else:
        q = np.asarray(spec.p_target_given, dtype=np.float64)
        if len(q) != k:
            raise FacebalanceError(
                f"synthfaces: p_target_given has {len(q)} values; {spec.protected} has "
                f"{k} groups")
        probs = np.stack([shares * (1 - q), shares * q], axis=1).ravel()
    return _largest_remainder(probs, spec.n).reshape(k, t)


def _utkface_ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ages drawn like UTKFace's adults: a decade by its share, uniform within it."""
    edges = np.asarray(UTKFACE_AGE_EDGES)
    band = rng.choice(len(UTKFACE_AGE_SHARES), size=n, p=UTKFACE_AGE_SHARES)
    return rng.uniform(edges[band], edges[band + 1])


def sample_attributes(spec: SplitSpec, seed: int | np.random.SeedSequence,
                      split: str = "train") -> pd.DataFrame:
    """Draw the attribute table of one split.

    Parameters
    ----------
    spec
        Size and target/protected joint distribution of the split.
    seed
        Seed of the split's random generator.
    split
        Split name, used in ids and identities (identities never cross splits).

    Returns
    -------
    pandas.DataFrame
        One row per image: ``id``, ``identity``, the binary attributes (int8), ``skin``
        (int8, 0 = lightest), ``age`` (float32), ``age_group`` (int8) and the per-identity
        hidden render parameters used by :func:`render` (prefixed ``_``).
    """
    controllable = (*BINARY_ATTRIBUTES, "skin")
    for key in (spec.target, spec.protected):
        if key and key not in (*controllable, "age"):
            raise FacebalanceError(
                f"synthfaces: unknown attribute {key!r}; valid: {', '.join(controllable)}, age")
    if spec.target == spec.protected and spec.target != "skin":
        raise FacebalanceError("synthfaces: target and protected attributes must differ")
    if spec.target == "skin" and spec.protected != "skin":
        raise FacebalanceError("synthfaces: a skin target needs skin as the protected groups")
    rng = np.random.default_rng(seed)
    counts = _cell_counts(spec)
    k, t = counts.shape
    prot = np.concatenate([np.full(counts[g].sum(), g) for g in range(k)])
    targ = np.concatenate([np.repeat(np.arange(t), counts[g]) for g in range(k)])
    n = spec.n
    attrs = {
        "blond": rng.random(n) < 0.15,
        "male": rng.random(n) < 0.42,
        "smiling": rng.random(n) < 0.48,
        "eyeglasses": rng.random(n) < 0.12,
    }
    controlled = {}
    if spec.protected:
        controlled[spec.protected] = prot
    if t == 2:
        controlled[spec.target] = targ
    for key, values in controlled.items():
        if key in attrs:
            attrs[key] = values.astype(bool)
    df = pd.DataFrame({k: v.astype(np.int8) for k, v in attrs.items()})
    if "skin" in controlled:
        df["_skin"] = controlled["skin"].astype(np.int8)
    df = df.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)

    # Identities: images with equal identity-level attributes share an identity.
    key = df["blond"].to_numpy() * 2 + df["male"].to_numpy()
    if "_skin" in df:
        key = key + 4 * df["_skin"].to_numpy().astype(np.int64)
    identity = np.empty(n, dtype=np.int64)
    next_id = 0
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        ident = np.arange(rows.size) // spec.images_per_identity
        identity[rows] = ident + next_id
        next_id += int(ident.max()) + 1
    n_ids = next_id
    df["identity"] = [f"{split}-{i:06d}" for i in identity]
    df.insert(0, "id", [f"{split}-{i:07d}" for i in range(n)])

    # Identity-level hidden parameters (geometry, skin, hair), then per-image age.
    skin = rng.integers(0, 4, n_ids)
    base_age = rng.uniform(18, 78, n_ids)
    if "_skin" in df:
        skin[identity] = df.pop("_skin").to_numpy()
    if spec.age_profile == "utkface" and not spec.balanced:
        base_age = _utkface_ages(rng, n_ids)
    id_blond = np.zeros(n_ids, dtype=bool)
    id_blond[identity] = df["blond"].to_numpy().astype(bool)
    hair_u = np.where(id_blond, 0.56 + 0.44 * rng.beta(1.2, 1.6, n_ids),
                      0.62 * rng.beta(1.6, 1.0, n_ids))
    if spec.blond_cue != 1.0:  # (the default keeps its draws bit-identical)
        hair_u = HAIR_EDGE + (hair_u - HAIR_EDGE) * spec.blond_cue
    id_male = np.zeros(n_ids, dtype=bool)
    id_male[identity] = df["male"].to_numpy().astype(bool)
    long_hair = np.where(id_male, rng.random(n_ids) < 0.05, rng.random(n_ids) < 0.95)
    beard = id_male & (rng.random(n_ids) < 0.55)
    geometry = rng.normal(0.0, 1.0, (n_ids, 6)).astype(np.float32)
    df["skin"] = skin[identity].astype(np.int8)
    age = np.clip(base_age[identity] + rng.normal(0, 1.5, n), 18, 80).astype(np.float32)
    df["age"] = age
    df["age_group"] = np.digitize(age, AGE_BINS).astype(np.int8)
    df["_hair_u"] = hair_u[identity].astype(np.float32)
    df["_long_hair"] = long_hair[identity].astype(np.int8)
    df["_beard"] = beard[identity].astype(np.int8)
    for j in range(geometry.shape[1]):
        df[f"_g{j}"] = geometry[identity, j]
    return df


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _paint(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """Alpha-composite ``color`` (B,3) or (B,S,S,3) over ``img`` (B,S,S,3) in place."""
    a = alpha[..., None]
    col = color[:, None, None, :] if color.ndim == 2 else color
    img *= 1.0 - a
    img += a * col


def render(table: pd.DataFrame, image_size: int = 32,
           seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Render the faces of an attribute table.

    Parameters
    ----------
    table
        Rows from :func:`sample_attributes` (any subset, any order).
    image_size
        Side of the output images in pixels.
    seed
        Seed for per-image nuisance factors (pose, lighting, background, noise).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(len(table), image_size, image_size, 3)``.
    """
    rng = np.random.default_rng(seed)
    b, s = len(table), image_size
    f32 = np.float32
    col = {c: table[c].to_numpy() for c in table.columns}
    male = col["male"].astype(f32)
    age = col["age"].astype(f32)
    old = np.clip((age - 35.0) / 40.0, 0, 1)
    g = np.stack([col[f"_g{j}"] for j in range(6)], axis=1).astype(f32)
    sharp = float(s)  # edges about one pixel soft at any size

    # Pose: shift, scale, in-plane rotation; the face frame coordinates x, y in [-1, 1].
    lin = (np.arange(s, dtype=f32) + 0.5) / s * 2 - 1
    gy, gx = np.meshgrid(lin, lin, indexing="ij")
    ang = rng.normal(0, 0.12, b).astype(f32)
    scale = (1.0 + rng.normal(0, 0.05, b)).astype(f32)
    dx, dy = rng.normal(0, 0.05, (2, b)).astype(f32)
    ca, sa = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    ux = (gx[None] - dx[:, None, None]) / scale[:, None, None]
    uy = (gy[None] - dy[:, None, None]) / scale[:, None, None]
    x = ca * ux + sa * uy
    y = -sa * ux + ca * uy

    # Background: colour + gradient.
    bg = rng.uniform(0.15, 0.85, (b, 3)).astype(f32)
    grad = rng.normal(0, 0.15, (b, 2)).astype(f32)
    img = np.broadcast_to(bg[:, None, None, :], (b, s, s, 3)).copy()
    img += (grad[:, 0, None, None] * gx + grad[:, 1, None, None] * gy)[..., None]

    # Hair colour: a fixed lightness per identity, greying with age.
    u = col["_hair_u"].astype(f32)
    hair = np.stack([np.interp(u, HAIR_RAMP_U, HAIR_RAMP[:, c]) for c in range(3)], axis=1)
    hair = hair * (1.0 + 0.06 * g[:, 5:6])
    grey = (np.clip((age - 45.0) / 30.0, 0, 1) * (0.4 + 0.3 * _sig(g[:, 4]))).astype(f32)
    hair = (hair * (1 - grey[:, None]) + GREY * grey[:, None]).astype(f32)

    # Face geometry: women narrower with a tapered chin; men a wider, squarer jaw.
    fw = (0.49 + 0.08 * male + 0.02 * g[:, 0])[:, None, None]
    fh = (0.66 + 0.03 * old + 0.025 * g[:, 1])[:, None, None]
    taper = (0.45 - 0.35 * male + 0.04 * g[:, 2])[:, None, None]
    face_y = 0.08
    yy = (y - face_y) / fh
    half_w = fw * (1.0 - taper * np.clip(yy, 0, None) ** 2)
    face_r = (x / half_w) ** 2 + yy**2
    face_a = _sig((1 - face_r) * sharp * 0.5)

    # Long hair behind the head down to the shoulders.
    long_hair = col["_long_hair"].astype(f32)[:, None, None]
    back = ((x / (fw + 0.16)) ** 2 + ((y - 0.05) / 0.85) ** 2)
    back_a = _sig((1 - back) * sharp * 0.4) * _sig((0.85 - y) * sharp) * long_hair
    _paint(img, back_a, hair)

    # Neck and shoulders (clothing colour random).
    skin = SKIN_TONES[col["skin"].astype(int)] * (1.0 + 0.05 * g[:, 3:4])
    neck_a = _sig((0.2 - np.abs(x)) * sharp) * _sig((y - 0.55) * sharp)
    _paint(img, neck_a, skin)
    cloth = rng.uniform(0.05, 0.95, (b, 3)).astype(f32)
    shoulder_a = _sig((y - 0.86) * sharp) * _sig(
        (1.0 - (x / 0.9) ** 2 - ((y - 1.25) / 0.45) ** 2) * sharp)
    _paint(img, shoulder_a, cloth)
    _paint(img, face_a, skin)

    # Hair cap over the top of the head; older men's hairline recedes.
    recede = (0.18 * male * np.clip((age - 40) / 30, 0, 1))[:, None, None]
    hairline = face_y - fh * (0.50 - recede) + 0.05 * np.cos(x * 6 + g[:, 4, None, None])
    cap_r = (x / (fw + 0.05)) ** 2 + ((y - face_y) / (fh + 0.07)) ** 2
    cap_a = _sig((1 - cap_r) * sharp * 0.5) * _sig((hairline - y) * sharp)
    _paint(img, cap_a, hair)

    # Eyes, brows (thicker and lower for men), mouth.
    eye_y = (face_y - 0.08 + 0.02 * g[:, 1])[:, None, None]
    eye_dx = (0.20 + 0.015 * g[:, 2])[:, None, None]
    ex = np.abs(x) - eye_dx
    eye_a = _sig((1 - (ex / 0.07) ** 2 - ((y - eye_y) / 0.045) ** 2) * 3)
    _paint(img, eye_a, np.full((b, 3), 0.08, f32))
    brow_t = (0.02 + 0.04 * male)[:, None, None]
    brow_y = eye_y - 0.11 + 0.02 * male[:, None, None]
    brow_a = _sig((brow_t - np.abs(y - brow_y)) * sharp * 1.5) * _sig((0.09 - np.abs(ex)) * sharp)
    _paint(img, brow_a, hair * 0.5)

    smile = col["smiling"].astype(f32)[:, None, None]
    mouth_y = face_y + 0.30 * fh
    curve = mouth_y + smile * 5.0 * (0.14**2 - x**2).clip(0)  # corners up when smiling
    mouth_w = 0.12 + 0.04 * smile
    mouth_t = 0.018 + 0.03 * smile
    mouth_a = (_sig((mouth_t - np.abs(y - curve)) * sharp * 1.5)
               * _sig((mouth_w - np.abs(x)) * sharp))
    lips = np.where((male < 0.5)[:, None] & (g[:, 5:6] > -0.3), [0.70, 0.15, 0.20],
                    [0.45, 0.18, 0.16]).astype(f32)
    _paint(img, mouth_a, lips)
    teeth_a = mouth_a * smile * _sig((0.01 - np.abs(y - curve + 0.005)) * sharp * 2)
    _paint(img, teeth_a, np.full((b, 3), 0.95, f32))

    # Beard: lower face of some men, textured.
    beard = col["_beard"].astype(f32)[:, None, None]
    tex = rng.normal(0, 0.1, (b, s, s)).astype(f32)
    beard_a = face_a * _sig((y - (face_y + 0.12)) * sharp) * beard * (0.85 + tex)
    beard_a = beard_a * (1 - mouth_a)
    _paint(img, np.clip(beard_a, 0, 1), hair * 0.7)

    # Wrinkles: forehead lines fading in with age.
    fore = face_a * _sig((y - (hairline + 0.04)) * sharp) * _sig((brow_y - 0.05 - y) * sharp)
    stripes = 0.5 + 0.5 * np.cos((y - face_y) * 60)
    wr = fore * stripes * (old**1.5)[:, None, None] * 0.5
    img *= (1 - 0.45 * wr)[..., None]

    # Eyeglasses: two rings and a bridge.
    glasses = col["eyeglasses"].astype(f32)[:, None, None]
    ring = np.sqrt((ex / 0.11) ** 2 + ((y - eye_y) / 0.085) ** 2)
    ring_a = _sig((0.22 - np.abs(ring - 1.0)) * sharp * 0.35)
    bridge_a = _sig((0.015 - np.abs(y - eye_y)) * sharp) * _sig((eye_dx - 0.1 - np.abs(x)) * sharp)
    frame = rng.uniform(0.0, 0.25, (b, 3)).astype(f32)
    _paint(img, np.clip(ring_a + bridge_a, 0, 1) * glasses, frame)

    # Directional lighting, colour cast, pixel noise.
    light = rng.normal(0, 0.25, (b, 2)).astype(f32)
    shade_map = 1.0 + light[:, 0, None, None] * gx + light[:, 1, None, None] * gy
    img *= shade_map[..., None]
    img *= rng.uniform(0.85, 1.15, (b, 1, 1, 1)).astype(f32)
    img *= (1 + rng.normal(0, 0.07, (b, 1, 1, 3))).astype(f32)  # colour cast
    img += rng.normal(0, 0.035, (b, s, s, 3)).astype(f32)

    # Occlusion: a random patch over 10% of images.
    occ = rng.random(b) < 0.10
    cx, cy = rng.uniform(-0.8, 0.8, (2, b)).astype(f32)
    half = rng.uniform(0.12, 0.25, b).astype(f32)
    occ_a = (_sig((half[:, None, None] - np.abs(gx - cx[:, None, None])) * sharp)
             * _sig((half[:, None, None] - np.abs(gy - cy[:, None, None])) * sharp))
    _paint(img, occ_a * occ[:, None, None], rng.uniform(0, 1, (b, 3)).astype(f32))

    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def public_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Drop the hidden render parameters, keeping the ground-truth attributes."""
    return table[[c for c in table.columns if not c.startswith("_")]]
