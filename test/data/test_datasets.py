"""Each loader on a small fixture written here in its dataset's exact on-disk format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from panoptic_perception.data.datasets import (
    DatasetConfig,
    KittiStepDataset,
    SyntheticDataset,
    build_dataset,
    cityscapes_panoptic,
    coco_panoptic,
)
from panoptic_perception.data.label_mapping import LabelMapping, LabelMappingConfig, load_label_mapping
from panoptic_perception.data.panoptic_io import PanopticWriter, id2rgb, segments_from_map
from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.labels import load_label_space

SPACE = load_label_space("cityscapes")
ROAD, SIDEWALK, BUILDING, TRAFFIC_LIGHT, SKY, PERSON, CAR = 0, 1, 2, 6, 10, 11, 13
H, W = 12, 16


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _by_cat(sample):
    out = {}
    for s in sample["segments"]:
        out.setdefault(s.category_id, []).append(s)
    return out


def _mask_of(sample, seg):
    return sample["panoptic"] == seg.id


# ------------------------------------------------------------------ Cityscapes
# cityscapesScripts label ids: 7 road, 9 parking (ignoreInEval), 23 sky, 24 person, 26 car
_CS_EVAL = [
    (7, "road", 0),
    (8, "sidewalk", 0),
    (11, "building", 0),
    (12, "wall", 0),
    (13, "fence", 0),
    (17, "pole", 0),
    (19, "traffic light", 0),
    (20, "traffic sign", 0),
    (21, "vegetation", 0),
    (22, "terrain", 0),
    (23, "sky", 0),
    (24, "person", 1),
    (25, "rider", 1),
    (26, "car", 1),
    (27, "truck", 1),
    (28, "bus", 1),
    (31, "train", 1),
    (32, "motorcycle", 1),
    (33, "bicycle", 1),
]


def _cityscapes_instance_ids() -> np.ndarray:
    """A gtFine *_instanceIds.png: label id, or label id * 1000 + k for instances."""
    ids = np.full((H, W), 23, np.int32)  # sky
    ids[6:] = 7  # road
    ids[10:, :4] = 9  # parking: ignored in eval -> VOID in the panoptic PNG
    ids[4:9, 1:5] = 26000  # car instance 0
    ids[4:9, 6:10] = 26001  # car instance 1
    ids[5:8, 11:13] = 26  # car group (no instance id) -> crowd
    ids[2:9, 14:16] = 24000  # person
    return ids


def _create_panoptic_imgs(instance_ids: np.ndarray):
    """What createPanopticImgs does to one frame (label ids, not train ids)."""
    eval_ids = {lid: thing for lid, _, thing in _CS_EVAL}
    pan = np.zeros_like(instance_ids)
    infos = []
    for seg_id in np.unique(instance_ids).tolist():
        label = seg_id if seg_id < 1000 else seg_id // 1000
        if label not in eval_ids:
            continue
        crowd = int(seg_id < 1000 and eval_ids[label] == 1)
        mask = instance_ids == seg_id
        pan[mask] = seg_id
        ys, xs = np.nonzero(mask)
        infos.append(
            {
                "id": seg_id,
                "category_id": label,
                "area": int(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                "iscrowd": crowd,
            }
        )
    return pan, infos


@pytest.fixture()
def cityscapes_root(tmp_path):
    image_id = "frankfurt_000000_000294"
    pan, infos = _create_panoptic_imgs(_cityscapes_instance_ids())
    gt = tmp_path / "gtFine"
    (gt / "cityscapes_panoptic_val").mkdir(parents=True)
    Image.fromarray(id2rgb(pan)).save(gt / "cityscapes_panoptic_val" / f"{image_id}_gtFine_panoptic.png")
    categories = [
        {"id": lid, "name": n, "color": [0, 0, 0], "supercategory": "x", "isthing": t}
        for lid, n, t in _CS_EVAL
    ]
    (gt / "cityscapes_panoptic_val.json").write_text(
        json.dumps(
            {
                "images": [
                    {"id": image_id, "width": W, "height": H, "file_name": f"{image_id}_leftImg8bit.png"}
                ],
                "annotations": [
                    {
                        "image_id": image_id,
                        "file_name": f"{image_id}_gtFine_panoptic.png",
                        "segments_info": infos,
                    }
                ],
                "categories": categories,
            },
            sort_keys=True,
            indent=4,
        )
    )
    img_dir = tmp_path / "leftImg8bit" / "val" / "frankfurt"
    img_dir.mkdir(parents=True)
    Image.fromarray(_image(1)).save(img_dir / f"{image_id}_leftImg8bit.png")
    return tmp_path


def test_cityscapes_panoptic_maps_label_ids_to_train_ids(cityscapes_root):
    ds = cityscapes_panoptic(cityscapes_root, "val")
    assert len(ds) == 1
    sample = ds[0]
    np.testing.assert_array_equal(sample["image"], _image(1))  # RGB order kept
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (H, W, 3)
    assert sample["panoptic"].dtype == np.int32 and sample["image_id"] == "frankfurt_000000_000294"
    src = _cityscapes_instance_ids()
    cats = _by_cat(sample)
    assert sorted(cats) == [ROAD, SKY, PERSON, CAR]
    cars = sorted(cats[CAR], key=lambda s: s.bbox_xywh[0])
    assert [c.iscrowd for c in cars] == [0, 0, 1]
    np.testing.assert_array_equal(_mask_of(sample, cars[0]), src == 26000)
    np.testing.assert_array_equal(_mask_of(sample, cars[2]), src == 26)
    assert cars[1].area_px == 20 and cars[1].bbox_xywh == (6, 4, 4, 5)
    np.testing.assert_array_equal(_mask_of(sample, cats[ROAD][0]), src == 7)
    assert (sample["panoptic"][src == 9] == 0).all()  # parking -> VOID


def test_cityscapes_build_dataset_and_missing_root(cityscapes_root, tmp_path_factory):
    ds = build_dataset(DatasetConfig(kind="cityscapes", root=str(cityscapes_root), split="val"))
    assert len(ds) == 1
    with pytest.raises(InputError, match="leftImg8bit"):
        cityscapes_panoptic(tmp_path_factory.mktemp("empty"), "val")


# ------------------------------------------------------------------ KITTI-STEP
def _step_png(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    return np.stack([semantic, instance // 256, instance % 256], axis=-1).astype(np.uint8)


def test_kitti_step_reads_semantic_and_instance_channels(tmp_path):
    semantic = np.full((H, W), SKY, np.int32)
    semantic[6:] = ROAD
    instance = np.zeros((H, W), np.int32)
    semantic[5:9, 1:6] = CAR
    instance[5:9, 1:6] = 300  # G = 1, B = 44: instance ids above 255 use G
    semantic[5:9, 7:10] = CAR
    instance[5:9, 7:10] = 2
    semantic[3:9, 12:14] = PERSON  # person without instance id -> crowd
    semantic[0, :] = 255  # void
    for split_dir in ("panoptic_maps", "images"):
        (tmp_path / split_dir / "val" / "0002").mkdir(parents=True)
    Image.fromarray(_step_png(semantic, instance)).save(tmp_path / "panoptic_maps/val/0002/000007.png")
    Image.fromarray(_image(2)).save(tmp_path / "images/val/0002/000007.png")
    ds = KittiStepDataset(tmp_path, "val")
    sample = ds[0]
    assert sample["image_id"] == "0002_000007"
    np.testing.assert_array_equal(sample["image"], _image(2))
    cats = _by_cat(sample)
    assert sorted(cats) == [ROAD, SKY, PERSON, CAR]
    cars = sorted(cats[CAR], key=lambda s: s.bbox_xywh[0])
    assert [c.area_px for c in cars] == [20, 12] and not any(c.iscrowd for c in cars)
    np.testing.assert_array_equal(_mask_of(sample, cars[0]), (semantic == CAR) & (instance == 300))
    assert cats[PERSON][0].iscrowd == 1
    assert (sample["panoptic"][0] == 0).all()
    with pytest.raises(InputError, match="panoptic maps not found"):
        KittiStepDataset(tmp_path, "train")


# ------------------------------------------------------------------ COCO panoptic
def test_coco_panoptic_mapping_merges_stuff_and_voids_unmapped(tmp_path):
    # COCO ids: 1 person, 3 car, 10 traffic light (thing in COCO), 92 banner (unmapped),
    # 128 house and 197 building-other-merged (both -> building), 187 sky
    pan = np.full((H, W), 1, np.int32)  # sky segment id 1
    pan[:, 8:] = 2  # house
    pan[6:, :] = 3  # building-other
    pan[8:, 10:] = 4  # banner
    pan[2:5, 2:4] = 5  # traffic light instance a
    pan[2:5, 5:7] = 6  # traffic light instance b
    pan[7:11, 1:6] = 7  # car
    cats = {1: 187, 2: 128, 3: 197, 4: 92, 5: 10, 6: 10, 7: 3}
    (tmp_path / "panoptic_val2017").mkdir()
    (tmp_path / "val2017").mkdir()
    Image.fromarray(id2rgb(pan)).save(tmp_path / "panoptic_val2017" / "000000000139.png")
    smooth = np.zeros((H, W, 3), np.uint8)  # JPEG keeps a smooth image: R high, B low checks RGB order
    smooth[..., 0], smooth[..., 1], smooth[..., 2] = 200, np.linspace(0, 255, W)[None, :].astype(np.uint8), 20
    Image.fromarray(smooth).save(tmp_path / "val2017" / "000000000139.jpg", quality=100)
    coco_cats = [
        {"id": i, "name": n, "isthing": t, "supercategory": "x"}
        for i, n, t in [
            (1, "person", 1),
            (3, "car", 1),
            (10, "traffic light", 1),
            (92, "banner", 0),
            (128, "house", 0),
            (187, "sky-other-merged", 0),
            (197, "building-other-merged", 0),
        ]
    ]
    (tmp_path / "panoptic_val2017.json").write_text(
        json.dumps(
            {
                "images": [{"id": 139, "file_name": "000000000139.jpg", "width": W, "height": H}],
                "annotations": [
                    {
                        "image_id": 139,
                        "file_name": "000000000139.png",
                        "segments_info": [
                            {"id": k, "category_id": v, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]}
                            for k, v in cats.items()
                        ],
                    }
                ],
                "categories": coco_cats,
            }
        )
    )
    ds = coco_panoptic(
        tmp_path / "panoptic_val2017.json", tmp_path / "panoptic_val2017", tmp_path / "val2017"
    )
    sample = ds[0]
    assert sample["image_id"] == "139"
    assert np.abs(sample["image"].astype(int) - smooth).max() < 12
    by = _by_cat(sample)
    assert sorted(by) == [BUILDING, TRAFFIC_LIGHT, SKY, CAR]
    assert len(by[BUILDING]) == 1 and len(by[TRAFFIC_LIGHT]) == 1  # stuff: one segment per image
    np.testing.assert_array_equal(_mask_of(sample, by[BUILDING][0]), (pan == 2) | (pan == 3))
    np.testing.assert_array_equal(_mask_of(sample, by[TRAFFIC_LIGHT][0]), (pan == 5) | (pan == 6))
    assert by[TRAFFIC_LIGHT][0].bbox_xywh == (2, 2, 5, 3)
    assert (sample["panoptic"][pan == 4] == 0).all()  # banner -> VOID
    assert sum(s.area_px for s in sample["segments"]) == int((sample["panoptic"] != 0).sum())


def test_png_id_without_segments_info_is_named(tmp_path):
    (tmp_path / "png").mkdir()
    (tmp_path / "img").mkdir()
    pan = np.ones((H, W), np.int32)
    pan[0, 0] = 9
    Image.fromarray(id2rgb(pan)).save(tmp_path / "png" / "a.png")
    Image.fromarray(_image(0)).save(tmp_path / "img" / "a.png")
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "images": [{"id": "a", "file_name": "a.png"}],
                "annotations": [
                    {"image_id": "a", "file_name": "a.png", "segments_info": [{"id": 1, "category_id": 187}]}
                ],
                "categories": [{"id": 187, "name": "sky", "isthing": 0}],
            }
        )
    )
    ds = coco_panoptic(tmp_path / "a.json", tmp_path / "png", tmp_path / "img")
    with pytest.raises(InputError, match=r"a.json image a: segment id\(s\) \[9\]"):
        ds[0]


# ------------------------------------------------------------------ synthetic world
def _write_drive(root, date, drive, frames, file_name_style):
    drive_dir = root / date / f"{date}_drive_{drive:04d}_sync"
    (drive_dir / "image_02" / "data").mkdir(parents=True)
    truth = []
    with PanopticWriter(drive_dir / "gt" / "panoptic.json", drive_dir / "gt" / "panoptic", SPACE) as writer:
        for f in range(frames):
            name = f"{f:010d}"
            ids = np.full((H, W), 1, np.int32)
            ids[6:] = 2
            ids[4:8, f + 2 : f + 6] = 1000 + f  # the car moves right one pixel per frame
            segs = segments_from_map(ids, {1: SKY, 2: ROAD, 1000 + f: CAR})
            image_name = f"image_02/data/{name}.png" if file_name_style == "relative" else f"{name}.png"
            writer.add(name, image_name, ids, segs)
            Image.fromarray(_image(10 * drive + f)).save(drive_dir / "image_02" / "data" / f"{name}.png")
            truth.append(ids)
    return truth


def test_synthetic_drives_in_kitti_layout(tmp_path):
    t1 = _write_drive(tmp_path, "2011_09_26", 1, 2, "relative")
    t2 = _write_drive(tmp_path, "2011_09_26", 5, 3, "basename")
    ds = SyntheticDataset(tmp_path)
    assert len(ds) == 5 and [d.name for d in ds.drives] == [
        "2011_09_26_drive_0001_sync",
        "2011_09_26_drive_0005_sync",
    ]
    s = ds[3]
    assert s["drive"] == "2011_09_26_drive_0005_sync" and s["image_id"] == "0000000001"
    np.testing.assert_array_equal(s["image"], _image(51))
    np.testing.assert_array_equal(s["panoptic"], t2[1])
    car = _by_cat(s)[CAR][0]
    assert car.bbox_xywh == (3, 4, 4, 4) and car.area_px == 16
    np.testing.assert_array_equal(ds[0]["panoptic"], t1[0])
    # a single drive folder and the build_dataset route give the same frames
    assert len(SyntheticDataset(ds.drives[1])) == 3
    assert len(build_dataset(DatasetConfig(kind="synthetic", root=str(tmp_path)))) == 5
    with pytest.raises(InputError, match="no drive"):
        SyntheticDataset(tmp_path / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_02")


# ------------------------------------------------------------------ mapping configs
def test_shipped_mappings_load_and_bad_names_are_config_errors():
    cs = load_label_mapping("cityscapes_label_ids")
    assert cs.target_of(26) == CAR and cs.target_of(7) == ROAD and cs.target_of(9) is None
    assert load_label_mapping("coco_panoptic").target_of(191) == SIDEWALK
    with pytest.raises(ConfigError, match="not a class of label space cityscapes"):
        LabelMapping(LabelMappingConfig(name="x", mapping={1: "carr"}))
    with pytest.raises(ConfigError, match="unknown label mapping"):
        load_label_mapping("no_such_mapping")
    with pytest.raises(ConfigError, match="needs root"):
        from panoptic_perception.config import from_dict

        from_dict(DatasetConfig, {"kind": "kitti_step"})
