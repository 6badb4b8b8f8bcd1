"""Ground-truth panoptic ids -> the fusion output contract the projector reads."""
from __future__ import annotations

import numpy as np
import pytest

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.panoptic_outputs import fusion_outputs_from_panoptic
from panoptic_perception.labels import load_label_space

ROAD, CAR = 0, 13


def test_segments_become_slots_with_their_tables():
    labels = load_label_space("cityscapes")
    panoptic = np.array([[0, 7, 7], [26001, 26001, 7], [26002, 7, 0]])
    outputs, slot_of = fusion_outputs_from_panoptic(panoptic, {7: ROAD, 26001: CAR, 26002: CAR}, labels, score=0.5)
    assert slot_of == {7: 1, 26001: 2, 26002: 3}
    expected = np.vectorize(lambda i: slot_of.get(int(i), 0))(panoptic)
    np.testing.assert_array_equal(outputs["segment_map"].numpy(), expected)
    assert outputs["segment_category"].tolist() == [ROAD, CAR, CAR]
    assert outputs["segment_is_thing"].tolist() == [False, True, True]
    assert outputs["segment_score"].tolist() == [0.5] * 3
    assert outputs["segment_valid"].all()


@pytest.mark.parametrize("panoptic, categories, match", [
    (np.array([[1, 2]]), {1: ROAD}, "without a category"),
    (np.array([[1, 2]]), {1: ROAD, 2: 99}, "not in label space"),
    (np.zeros((2, 2), dtype=np.float32), {}, "integer"),
    (np.zeros(4, dtype=np.int32), {}, "2-D"),
])
def test_bad_panoptic_input_is_named(panoptic, categories, match):
    with pytest.raises(InputError, match=match):
        fusion_outputs_from_panoptic(panoptic, categories, load_label_space("cityscapes"))
