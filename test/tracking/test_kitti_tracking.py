"""KITTI tracking files: real labels parse, their geometry matches KITTI's, our boxes round-trip, strict reading."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from repo_paths import FIXTURES

from panoptic_perception.data import kitti
from panoptic_perception.data.synth.world import ObjectBox
from panoptic_perception.errors import InputError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.tracking.kitti_tracking import (
    KITTI_TYPES,
    KittiBoxConverter,
    TrackingLabel,
    TrackVelocities,
    VehicleBox,
    kitti_type,
    parse_label_line,
    read_tracking_file,
    read_velocity_file,
    track_labels,
    velocity_file_path,
    write_tracking_file,
    write_velocity_file,
)
from panoptic_perception.tracking.tracker import CONFIRMED, LOST, TENTATIVE, Track

REAL_LABELS = FIXTURES / "kitti_tracking" / "label_02_0000_frames_0_1.txt"
KITTI_CALIB = FIXTURES / "kitti" / "2011_09_26"


@pytest.fixture(scope="module")
def real_converter() -> KittiBoxConverter:
    return KittiBoxConverter(kitti.KittiCalibration.read(KITTI_CALIB))


@pytest.fixture(scope="module")
def level_converter(tmp_path_factory) -> KittiBoxConverter:
    """The calibration a synthetic drive writes: a level camera 1.65 m up, KITTI's intrinsics."""
    date = tmp_path_factory.mktemp("calib") / "2011_09_26"
    kitti.write_calibration(date, Camera())
    return KittiBoxConverter(kitti.KittiCalibration.read(date))


# ---------------------------------------------------------------------------- real labels
def test_real_kitti_labels_parse():
    labels = read_tracking_file(REAL_LABELS)
    assert len(labels) == 10
    assert [(lb.frame, lb.track_id, lb.type) for lb in labels[:5]] == [
        (0, -1, "DontCare"), (0, -1, "DontCare"), (0, 0, "Van"), (0, 1, "Cyclist"), (0, 2, "Pedestrian")]
    van = labels[2]
    assert (van.truncated, van.occluded, van.score) == (0, 0, None)
    assert van.alpha_rad == -1.793451 and van.rotation_y_rad == -2.115488
    assert van.bbox_ltrb_px == (296.744956, 161.752147, 455.226042, 292.372804)
    assert van.dimensions_hwl_m == (2.0, 1.823255, 4.433886)
    assert van.location_m == (-4.552284, 1.858523, 13.410495)
    dont_care = labels[0]
    # KITTI's tracking DontCare lines: no 3D box (dimensions -1000, location -10 -1 -1, rotation_y -1)
    assert dont_care.dimensions_hwl_m == (-1000.0, -1000.0, -1000.0) and dont_care.location_m == (-10.0, -1.0, -1.0)
    assert dont_care.bbox_ltrb_px == (219.31, 188.49, 245.5, 218.56)


def test_real_lines_are_written_back_as_kitti_writes_them():
    lines = [line for line in REAL_LABELS.read_text().splitlines() if line.strip()]
    assert [parse_label_line(line).to_line() for line in lines] == lines


def test_the_devkit_frame_chain_is_ours(real_converter):
    """x_rect = R0_rect * Tr_velo_to_cam * x_velo (the devkit), our vehicle frame = Velodyne + 1.73 m up."""
    cam = kitti.read_calib_file(KITTI_CALIB / kitti.CAM_TO_CAM)
    velo = kitti.read_calib_file(KITTI_CALIB / kitti.VELO_TO_CAM)
    tr = np.eye(4)
    tr[:3, :3], tr[:3, 3] = velo["R"].reshape(3, 3), velo["T"]
    r0 = np.eye(4)
    r0[:3, :3] = cam["R_rect_00"].reshape(3, 3)
    points_velo = np.array([[10.0, 2.0, -1.0], [35.0, -6.0, 0.5], [4.0, 0.0, -1.73]])
    expected = (r0 @ tr @ np.c_[points_velo, np.ones(3)].T).T[:, :3]
    vehicle = points_velo + [0.0, 0.0, kitti.VELODYNE_HEIGHT_M]
    np.testing.assert_allclose(real_converter.to_rect0(vehicle), expected, atol=1e-9)
    np.testing.assert_allclose(real_converter.to_vehicle(expected), vehicle, atol=1e-9)


def test_a_real_box_projects_onto_its_labelled_2d_box(real_converter):
    """KITTI's 2D boxes of sequence 0000 are its 3D boxes seen by camera 2: ours land within 3 px."""
    labels = {lb.type: lb for lb in read_tracking_file(REAL_LABELS) if lb.frame == 0}
    van = labels["Van"]
    bbox, truncated = real_converter.image_box(van.location_m, van.dimensions_hwl_m, van.rotation_y_rad)
    np.testing.assert_allclose(bbox, van.bbox_ltrb_px, atol=3.0)
    assert truncated == 0
    cyclist = labels["Cyclist"]  # its wheel leaves the image: KITTI clips the box at the last row, 374
    bbox, truncated = real_converter.image_box(cyclist.location_m, cyclist.dimensions_hwl_m, cyclist.rotation_y_rad)
    assert bbox[3] == cyclist.bbox_ltrb_px[3] == real_converter.height_px - 1 == 374
    np.testing.assert_allclose(bbox[:3], cyclist.bbox_ltrb_px[:3], atol=3.0)
    assert truncated == 1


def test_real_labels_round_trip_through_the_vehicle_frame_and_keep_their_alpha(real_converter):
    for label in read_tracking_file(REAL_LABELS):
        if label.type == "DontCare":
            continue
        box = real_converter.box(label)
        again = real_converter.label(box, label.frame, label.track_id, label.type)
        np.testing.assert_allclose(again.location_m, label.location_m, atol=1e-9)
        np.testing.assert_allclose(again.dimensions_hwl_m, label.dimensions_hwl_m, atol=1e-12)
        # the real camera is pitched ~0.85 degrees against the Velodyne: the heading read back moves ~1e-4 rad
        assert abs(math.remainder(again.rotation_y_rad - label.rotation_y_rad, 2 * math.pi)) < 2e-4
        # KITTI's alphas were computed in the annotation's own frames: ours agree within 0.03 rad
        assert abs(math.remainder(again.alpha_rad - label.alpha_rad, 2 * math.pi)) < 0.03


def test_the_real_camera_is_close_to_level_so_rotation_y_is_near_minus_yaw_minus_half_pi(real_converter):
    for yaw in np.linspace(-3.0, 3.0, 13):
        expected = math.remainder(-yaw - math.pi / 2, 2 * math.pi)
        assert abs(math.remainder(real_converter.rotation_y(yaw) - expected, 2 * math.pi)) < 0.02


# ---------------------------------------------------------------------------- our boxes
def test_rotation_y_of_a_level_camera_is_minus_yaw_minus_half_pi(level_converter):
    # straight ahead: the length axis is the camera's z, which the devkit's Ry(ry) (1, 0, 0) gives at ry = -pi/2
    assert level_converter.rotation_y(0.0) == pytest.approx(-math.pi / 2, abs=1e-12)
    assert level_converter.rotation_y(-math.pi / 2) == pytest.approx(0.0, abs=1e-12)  # driving right: camera +x
    assert abs(level_converter.rotation_y(math.pi / 2)) == pytest.approx(math.pi, abs=1e-12)  # driving left
    for yaw in np.linspace(-3.1, 3.1, 23):
        ry = level_converter.rotation_y(yaw)
        assert math.remainder(ry + yaw + math.pi / 2, 2 * math.pi) == pytest.approx(0.0, abs=1e-12)
        assert math.remainder(level_converter.yaw(ry) - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-12)


def test_the_devkit_box_is_the_vehicle_box(level_converter):
    """computeBox3D's corners from our label are the synthetic world's own corners of that box."""
    box = ObjectBox(7, 0, 13, "car", center_m=(18.0, -3.0, 0.8), size_m=(4.4, 1.8, 1.6), yaw_rad=0.6, speed_mps=3.0)
    label = level_converter.label(VehicleBox(box.center_m, box.size_m, box.yaw_rad), 4, 7, kitti_type("car"), 0.9)
    ours = level_converter.corners_rect0(label.location_m, label.dimensions_hwl_m, label.rotation_y_rad)
    theirs = level_converter.to_rect0(box.corners())
    # same 8 points (each set in its own order)
    distance = np.linalg.norm(ours[:, None, :] - theirs[None, :, :], axis=-1)
    assert distance.min(axis=1).max() < 1e-9 and distance.min(axis=0).max() < 1e-9
    assert label.location_m[1] == pytest.approx(1.65, abs=1e-9)  # bottom on the road, 1.65 m below the camera


def test_a_known_object_round_trips_through_a_file(level_converter, tmp_path):
    boxes = {3: VehicleBox((12.0, 2.5, 0.75), (4.2, 1.7, 1.5), -0.3),
             8: VehicleBox((25.0, -4.0, 0.9), (0.5, 0.6, 1.8), 2.9)}
    labels = [level_converter.label(b, frame=2, track_id=k, kind="Car", score=0.75) for k, b in boxes.items()]
    path = tmp_path / "drive.txt"
    write_tracking_file(path, labels)
    read = read_tracking_file(path)
    assert [(lb.frame, lb.track_id, lb.type, lb.score) for lb in read] == [(2, 3, "Car", 0.75), (2, 8, "Car", 0.75)]
    for label, (_, box) in zip(read, boxes.items()):
        back = level_converter.box(label)
        np.testing.assert_allclose(back.center_m, box.center_m, atol=2e-6)  # 6 decimals in the file
        np.testing.assert_allclose(back.size_m, box.size_m, atol=1e-6)
        assert math.remainder(back.yaw_rad - box.yaw_rad, 2 * math.pi) == pytest.approx(0.0, abs=2e-6)


def test_boxes_the_camera_cannot_see_have_no_label(level_converter):
    behind = VehicleBox((-10.0, 0.0, 0.75), (4.0, 1.8, 1.5), 0.0)
    beside = VehicleBox((1.0, 8.0, 0.75), (4.0, 1.8, 1.5), 0.0)  # in front of the camera plane, out of the picture
    assert level_converter.label(behind, 0, 1, "Car") is None
    assert level_converter.label(beside, 0, 1, "Car") is None
    half_behind = level_converter.label(VehicleBox((1.0, 0.0, 0.75), (4.0, 1.8, 1.5), 0.0), 0, 1, "Car")
    assert half_behind is not None and half_behind.truncated == 1


def test_class_names_map_to_kitti_types():
    assert [kitti_type(n) for n in ("car", "truck", "person", "rider", "train", "bus", "bicycle", "giraffe")] == [
        "Car", "Truck", "Pedestrian", "Cyclist", "Tram", "Misc", "Misc", "Misc"]
    assert set(KITTI_TYPES) >= {kitti_type(n) for n in ("car", "motorcycle")}


# ---------------------------------------------------------------------------- strict reading
VAN = "0 0 Van 0 0 -1.793451 296.744956 161.752147 455.226042 292.372804 2.000000 1.823255 4.433886 -4.552284 " \
      "1.858523 13.410495 -2.115488"


@pytest.mark.parametrize("line, message", [
    (VAN.rsplit(" ", 1)[0], "expected 17 values"),
    (VAN.replace("Van", "Bus"), "type 'Bus' is not a KITTI type"),
    (VAN.replace("-1.793451", "x", 1), "field 'alpha' is not a number: 'x'"),
    (VAN.replace("0 0 Van 0 0", "0 0 Van 0.35 0"), "truncated must be an integer"),
    (VAN.replace("0 0 Van 0 0", "0 0 Van 0 4"), "occluded must be one of"),
    (VAN.replace("0 0 Van", "0 -1 Van"), "track id must be >= 0"),
    (VAN.replace("0 0 Van", "-2 0 Van"), "frame must be >= 0"),
    (VAN.replace("2.000000 1.823255", "0.000000 1.823255"), "positive height, width, length"),
    (VAN.replace("296.744956", "500.0"), "is not left top right bottom"),
    (VAN.replace("13.410495", "nan"), "field 'z' is not finite"),
])
def test_a_bad_line_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "0000.txt"
    path.write_text(VAN + "\n" + line + "\n")
    with pytest.raises(InputError, match=f"{path} line 2: .*{message}"):
        read_tracking_file(path)


def test_a_track_twice_in_a_frame_is_an_error(tmp_path):
    path = tmp_path / "0000.txt"
    path.write_text(VAN + "\n\n" + VAN + "\n")
    with pytest.raises(InputError, match="line 3: track 0 is in frame 0 twice"):
        read_tracking_file(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_tracking_file(tmp_path / "none.txt")


# ---------------------------------------------------------------------------- velocities
def test_velocity_side_file_round_trips(tmp_path):
    path = velocity_file_path(tmp_path / "2011_09_26_drive_0001_sync.txt")
    assert path.name == "2011_09_26_drive_0001_sync.velocity.json"
    written = TrackVelocities("d", 12, True, {(0, 3): (1.5, -0.25), (1, 3): (1.25, 0.0)}, {3: "car"})
    write_velocity_file(path, written)
    assert read_velocity_file(path) == written


@pytest.mark.parametrize("text, message", [
    ("{", "not readable JSON"),
    ('{"format": "other"}', "'format' must be"),
    ('{"format": "panoptic_perception track velocities v1", "num_frames": 3}', "lacks over_ground, velocities"),
    ('{"format": "panoptic_perception track velocities v1", "num_frames": 3, "over_ground": true, '
     '"velocities": [[0, 1, 2.0]]}', r"velocities\[0\] must be \[frame, track_id, vx_mps, vy_mps\]"),
    ('{"format": "panoptic_perception track velocities v1", "num_frames": 3, "over_ground": true, '
     '"velocities": [[0, 1, 2.0, 0], [0, 1, 1.0, 0]]}', "frame 0 track 1 is given twice"),
])
def test_a_bad_velocity_file_is_named(tmp_path, text, message):
    path = tmp_path / "d.velocity.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_velocity_file(path)


# ---------------------------------------------------------------------------- tracks
def _track(track_id: int, x_m: float, y_m: float, status: str = CONFIRMED, **kwargs) -> Track:
    values = dict(track_id=track_id, class_name="car", category=13, status=status, x_m=x_m, y_m=y_m, vx_mps=2.0,
                  vy_mps=0.0, speed_mps=2.0, speed_sigma_mps=0.1, is_moving=True, heading_rad=0.0, front_known=True,
                  length_m=4.4, width_m=1.8, covariance=tuple(np.eye(4).ravel()), age_frames=5, hits=5, misses=0,
                  segment_id=4, score=0.9)
    values.update(kwargs)
    return Track(**values)


def test_confirmed_tracks_become_labels_in_the_vehicle_frame(level_converter):
    # the ego stands 100 m along odom's x, turned left by 90 degrees: odom (100, 20) is 20 m ahead of it
    odom_from_vehicle = np.array([[0.0, -1.0, 0.0, 100.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1]])
    tracks = [_track(1, 100.0, 20.0, heading_rad=math.pi / 2), _track(2, 100.0, 25.0, status=TENTATIVE),
              _track(3, 100.0, 30.0, status=LOST), _track(4, 100.0, -20.0)]  # 4: 20 m behind the ego
    out = track_labels(tracks, 6, level_converter, np.linalg.inv(odom_from_vehicle))
    assert [(label.frame, label.track_id, label.type) for label, _ in out] == [(6, 1, "Car")]
    label, track = out[0]
    assert (track.x_m, track.y_m) == pytest.approx((20.0, 0.0))
    assert (track.vx_mps, track.vy_mps) == pytest.approx((0.0, -2.0))  # odom +x is the ego's right
    assert label.rotation_y_rad == pytest.approx(-math.pi / 2)  # heading along the ego's x
    assert label.score == 0.9 and label.dimensions_hwl_m == pytest.approx((1.5, 1.8, 4.4))
    back = level_converter.box(label)
    assert back.center_m[:2] == pytest.approx((20.0, 0.0), abs=1e-9)
    assert replace(label, score=None).to_line().count(" ") == 16 and isinstance(label, TrackingLabel)
