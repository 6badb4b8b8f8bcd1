import json

import numpy as np
import pytest

from panoptic_perception.data.panoptic_io import (
    PanopticWriter,
    id2rgb,
    read_panoptic_json,
    read_panoptic_png,
    rgb2id,
    segments_from_map,
)
from panoptic_perception.errors import InputError
from panoptic_perception.labels import load_label_space


def test_id_rgb_round_trip_covers_24_bits():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 2**24 - 1, 12345678]], dtype=np.int64)
    np.testing.assert_array_equal(rgb2id(id2rgb(ids)), ids)
    assert tuple(id2rgb(np.array([[1 + 2 * 256 + 3 * 65536]]))[0, 0]) == (1, 2, 3)
    with pytest.raises(InputError, match="24-bit"):
        id2rgb(np.array([[2**24]]))


def test_writer_produces_coco_panoptic(tmp_path):
    space = load_label_space("cityscapes")
    ids = np.zeros((10, 12), dtype=np.int32)
    ids[2:5, 3:9] = 1000
    ids[6:, :] = 7
    segments = segments_from_map(ids, {1000: 13, 7: 0}, scores={1000: 0.8})
    with PanopticWriter(tmp_path / "pred.json", tmp_path / "pred", space) as writer:
        writer.add("frame0", "frame0.png", ids, segments)
    data = read_panoptic_json(tmp_path / "pred.json")
    assert data["images"][0] == {"id": "frame0", "file_name": "frame0.png", "width": 12, "height": 10}
    seg = {s["id"]: s for s in data["annotations"][0]["segments_info"]}
    assert seg[1000]["bbox"] == [3, 2, 6, 3] and seg[1000]["area"] == 18 and seg[1000]["category_id"] == 13
    assert seg[7]["area"] == 48
    assert len(data["categories"]) == 19 and data["categories"][13]["isthing"] == 1
    np.testing.assert_array_equal(read_panoptic_png(tmp_path / "pred" / "frame0.png"), ids)
    json.loads((tmp_path / "pred.json").read_text())


def test_bad_files_are_named(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_panoptic_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json"):
        read_panoptic_json(tmp_path / "bad.json")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match="bad.png"):
        read_panoptic_png(tmp_path / "bad.png")
