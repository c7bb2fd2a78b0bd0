"""Attribute classifiers: how many classes each attribute gets."""

from __future__ import annotations

import pytest

from facebalance.errors import FacebalanceError
from facebalance.models.attributes import attribute_classes


def test_classes_of_target_and_protected() -> None:
    assert attribute_classes([0, 1], "target", "blond") == 2
    assert attribute_classes([0, 1, 2, 3], "protected", "skin") == 4
    with pytest.raises(FacebalanceError, match=r"train_attr: dataset.target = 'skin' holds "
                       r"\[0, 1, 2\]; the latent stages need a binary target"):
        attribute_classes([0, 1, 2], "target", "skin")
    with pytest.raises(FacebalanceError, match=r"dataset.protected = 'age' holds \[18.5\]"):
        attribute_classes([18.5], "protected", "age")
