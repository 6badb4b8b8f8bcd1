"""ros/conversions.py: messages <-> numpy, headers, and what survives serialisation."""
from __future__ import annotations

import io

import numpy as np
import pytest
from rosharness import round_trip

pytest.importorskip("rospy", reason="ROS Python packages not installed (run `make setup`)")

import genpy  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from panoptic_perception.data.panoptic_io import Segment  # noqa: E402
from panoptic_perception.errors import InputError  # noqa: E402
from panoptic_perception.geometry.camera import Intrinsics  # noqa: E402
from panoptic_perception.geometry.grid import GridGeometry  # noqa: E402
from panoptic_perception.geometry.objects import Footprint, GroundObject  # noqa: E402
from panoptic_perception.labels import load_label_space  # noqa: E402
from panoptic_perception.msg import DetectedObjects, PanopticSegmentation  # noqa: E402
from panoptic_perception.ros import conversions as conv  # noqa: E402

STAMP = genpy.Time(1317384513, 123456789)


def _header(frame: str = "camera_color_left") -> Header:
    return Header(seq=7, stamp=STAMP, frame_id=frame)


def _rgb(height: int = 6, width: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _as_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ("rgb8",):
        return rgb
    if encoding in ("bgr8", "8UC3"):
        return rgb[..., ::-1]
    alpha = np.full(rgb.shape[:2] + (1,), 17, dtype=np.uint8)
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2)
    if encoding in ("bgra8", "8UC4"):
        return np.concatenate([rgb[..., ::-1], alpha], axis=2)
    raise AssertionError(encoding)


def _image_msg(pixels: np.ndarray, encoding: str, pad_bytes: int = 0) -> Image:
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    row = pixels.reshape(height, -1)
    if pad_bytes:
        row = np.concatenate([row, np.full((height, pad_bytes), 99, np.uint8)], axis=1)
    return Image(header=_header(), height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=row.shape[1], data=row.tobytes())


def _roundtrip(msg):
    """Serialise and deserialise as the wire does, so the result looks like a received message."""
    buf = io.BytesIO()
    msg.serialize(buf)
    out = type(msg)()
    out.deserialize(buf.getvalue())
    return out


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4"])
@pytest.mark.parametrize("pad_bytes", [0, 3])
def test_colour_encodings_give_the_same_rgb(encoding, pad_bytes):
    rgb = _rgb()
    msg = _roundtrip(_image_msg(_as_encoding(rgb, encoding), encoding, pad_bytes))
    out = conv.image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono_is_replicated_into_three_channels(encoding):
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5)
    out = conv.image_to_rgb(_image_msg(grey, encoding, pad_bytes=2))
    assert out.shape == (6, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_rgb8_from_a_list_payload_and_copy_flag():
    rgb = _rgb()
    msg = _image_msg(rgb, "rgb8")
    msg.data = list(msg.data)  # hand-built messages may carry a list
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)
    copied = conv.image_to_rgb(_image_msg(rgb, "rgb8"), copy=True)
    copied[0, 0] = 0  # a copy is writable and independent
    assert copied.flags.writeable


@pytest.mark.parametrize("mutate, needle", [
    (lambda m: setattr(m, "encoding", "hsv8"), "unsupported encoding 'hsv8'"),
    (lambda m: setattr(m, "encoding", "rgb16"), "'rgb16' 5x6 needs step >= 30"),
    (lambda m: setattr(m, "encoding", "16UC1"), "cv_bridge cannot turn '16UC1' into rgb8"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty image"),
    (lambda m: setattr(m, "data", m.data[:-1]), "expected step"),
    (lambda m: setattr(m, "step", 4), "smaller than width"),
])
def test_bad_images_raise_input_error_naming_the_problem(mutate, needle):
    msg = _image_msg(_rgb(), "rgb8")
    mutate(msg)
    with pytest.raises(InputError, match=needle) as exc:
        conv.image_to_rgb(msg)
    assert "camera_color_left" in str(exc.value)  # names which frame was bad


def _raw_msg(array: np.ndarray, encoding: str) -> Image:
    array = np.ascontiguousarray(array)
    return _roundtrip(Image(header=_header(), height=array.shape[0], width=array.shape[1], encoding=encoding,
                            is_bigendian=0, step=array.strides[0], data=array.tobytes()))


def test_bayer_rggb8_is_demosaiced_to_its_colour():
    # An RGGB mosaic of one colour: R at (even, even), G at (even, odd) and (odd, even), B at (odd, odd).
    mosaic = np.empty((12, 16), np.uint8)
    mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = 200, 100, 100, 50
    rgb = conv.image_to_rgb(_raw_msg(mosaic, "bayer_rggb8"))
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[2:-2, 2:-2].reshape(-1, 3), np.tile([200, 100, 50], (8 * 12, 1)), atol=2)


def test_yuv422_and_16_bit_images_become_rgb8():
    # UYVY with U = V = 128 (no colour) and Y = 90: grey 1.164 (90 - 16) = 86 (BT.601 video range).
    uyvy = np.full((4, 6, 2), 128, np.uint8)
    uyvy[..., 1] = 90
    np.testing.assert_allclose(conv.image_to_rgb(_raw_msg(uyvy, "yuv422")), round(1.164 * (90 - 16)), atol=1)
    rgb16 = np.zeros((5, 7, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 255 * 256, 128 * 256, 10 * 256
    # 16 -> 8 bits scales by 255 / 65535 (cv_bridge), within one grey level of the top byte
    np.testing.assert_allclose(conv.image_to_rgb(_raw_msg(rgb16, "rgb16"))[3, 4], [255, 128, 10], atol=1)
    mono16 = np.full((5, 7), 77 * 256, np.uint16)
    np.testing.assert_allclose(conv.image_to_rgb(_raw_msg(mono16, "mono16")), 77, atol=1)


@pytest.mark.parametrize("ext, fmt", [(".png", "rgb8; png compressed bgr8"), (".jpg", "jpeg")])
def test_compressed_images_decode_to_rgb(ext, fmt):
    import cv2

    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:16] = (0, 255, 0)
    rgb[:, 16:] = (0, 0, 255)
    ok, encoded = cv2.imencode(ext, rgb[..., ::-1])
    assert ok
    msg = _roundtrip(CompressedImage(header=_header(), format=fmt, data=encoded.tobytes()))
    out = conv.image_message_to_rgb(msg)
    assert out.shape == rgb.shape
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)
    else:  # lossy: compare block centres, away from chroma-subsampled edges
        for col, expected in ((4, (255, 0, 0)), (12, (0, 255, 0)), (20, (0, 0, 255))):
            assert np.abs(out[8, col].astype(int) - np.array(expected)).max() <= 40
    with pytest.raises(InputError, match="empty compressed"):
        conv.compressed_to_rgb(CompressedImage(header=_header(), format=fmt, data=b""))
    with pytest.raises(InputError, match="cannot decode"):
        conv.compressed_to_rgb(CompressedImage(header=_header(), format=fmt, data=b"not an image"))


def _kitti_info(width=1242, height=375) -> CameraInfo:
    k = [721.5377, 0.0, 609.5593, 0.0, 721.5377, 172.854, 0.0, 0.0, 1.0]
    p = [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884]
    return CameraInfo(header=_header(), width=width, height=height, distortion_model="plumb_bob",
                      D=[0.0] * 5, K=k, R=[1, 0, 0, 0, 1, 0, 0, 0, 1], P=p)


def test_camera_info_to_intrinsics_and_back():
    info = _roundtrip(_kitti_info())
    intr = conv.camera_info_to_intrinsics(info)
    assert (intr.width, intr.height) == (1242, 375)
    assert intr.is_rectified
    assert intr.P[3] == pytest.approx(44.85728)
    np.testing.assert_allclose(intr.camera_matrix, np.array(info.P).reshape(3, 4)[:, :3])
    back = conv.intrinsics_to_camera_info(intr, _header())
    np.testing.assert_allclose(back.P, info.P)
    np.testing.assert_allclose(back.K, info.K)
    assert back.header.stamp == STAMP


def test_uncalibrated_camera_info_and_size_mismatch_are_input_errors():
    info = _kitti_info()
    info.K = [0.0] * 9
    with pytest.raises(InputError, match="not calibrated"):
        conv.camera_info_to_intrinsics(info)
    with pytest.raises(InputError, match="image is 5x6 but its CameraInfo"):
        conv.check_image_matches_camera_info(_rgb(), _kitti_info())
    conv.check_image_matches_camera_info(np.zeros((375, 1242, 3), np.uint8), _kitti_info())
    # A P without a projection falls back to [K | 0].
    info = _kitti_info()
    info.P = [0.0] * 12
    assert conv.camera_info_to_intrinsics(info).P is None


def test_rgb_and_mono_outputs_keep_the_input_header():
    rgb = _rgb(7, 9)
    msg = _roundtrip(conv.rgb_to_image_msg(rgb, _header()))
    assert msg.encoding == "rgb8" and msg.step == 27
    assert (msg.header.stamp, msg.header.frame_id) == (STAMP, "camera_color_left")
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)
    classes = np.array([[0, 1, 255], [18, 2, 3]], np.uint8)
    mono = _roundtrip(conv.category_map_to_mono8_msg(classes, _header()))
    assert mono.encoding == "mono8" and mono.header.stamp == STAMP
    np.testing.assert_array_equal(np.frombuffer(mono.data, np.uint8).reshape(2, 3), classes)
    with pytest.raises(InputError):
        conv.rgb_to_image_msg(rgb.astype(np.float32), _header())
    with pytest.raises(InputError):
        conv.category_map_to_mono8_msg(classes.astype(np.int32), _header())


def test_panoptic_message_ids_match_segments_and_survive_serialisation():
    cityscapes = load_label_space("cityscapes")
    seg = np.zeros((12, 16), np.int32)
    seg[6:, :] = 1000  # road
    seg[2:5, 3:9] = 2**24 + 5  # a car with an id beyond 24 bits
    segments = [
        Segment(id=1000, category_id=0, area_px=96, bbox_xywh=(0, 6, 16, 6)),
        Segment.from_coco({"id": 2**24 + 5, "category_id": 13, "area": 18, "bbox": [3, 2, 6, 3], "score": 0.875},
                          "test"),
    ]
    msg = _roundtrip(conv.panoptic_to_msg(seg, segments, _header(), cityscapes))
    assert msg.label_space == "cityscapes"
    assert msg.header.stamp == STAMP and msg.header.frame_id == "camera_color_left"
    assert msg.panoptic.header.stamp == STAMP and msg.panoptic.encoding == "32SC1"
    ids, table = conv.panoptic_msg_to_numpy(msg)
    np.testing.assert_array_equal(ids, seg)
    assert {s.id for s in table} == set(np.unique(ids[ids != 0]).tolist())
    assert table[1] == Segment(id=2**24 + 5, category_id=13, area_px=18, bbox_xywh=(3, 2, 6, 3), score=0.875,
                               category_name="car", is_thing=True)
    by_id = {s.id: s for s in msg.segments}
    car = by_id[2**24 + 5]
    assert (car.category_name, car.is_thing, car.area) == ("car", True, 18)
    assert car.score == pytest.approx(0.875)
    assert (car.bbox.x_offset, car.bbox.y_offset, car.bbox.width, car.bbox.height) == (3, 2, 6, 3)
    assert (by_id[1000].category_name, by_id[1000].is_thing) == ("road", False)


def test_panoptic_rejects_bad_segments():
    cityscapes = load_label_space("cityscapes")
    seg = np.zeros((4, 4), np.int32)
    with pytest.raises(InputError, match="category 40"):
        conv.panoptic_to_msg(seg, [Segment(id=1, category_id=40)], _header(), cityscapes)
    with pytest.raises(InputError, match="0 is void"):
        conv.panoptic_to_msg(seg, [Segment(id=0, category_id=1)], _header(), cityscapes)
    with pytest.raises(InputError, match="integer array"):
        conv.panoptic_to_msg(seg.astype(np.float32), [], _header(), cityscapes)


GEOMETRY = GridGeometry(resolution_m=0.5, origin_x_m=2.0, origin_y_m=-3.0, width=6, height=4)


def test_occupancy_grid_has_geometry_vehicle_frame_and_input_stamp():
    occ = np.full((4, 6), -1, np.int8)
    occ[1, 2] = 100
    occ[3, 5] = 0
    msg = _roundtrip(conv.occupancy_to_msg(occ, GEOMETRY, _header(), "base_link"))
    assert msg.header.frame_id == "base_link" and msg.header.stamp == STAMP
    assert msg.info.map_load_time == STAMP
    assert (msg.info.width, msg.info.height) == (6, 4)
    assert msg.info.resolution == pytest.approx(0.5)
    assert (msg.info.origin.position.x, msg.info.origin.position.y) == (2.0, -3.0)
    assert msg.info.origin.orientation.w == 1.0
    # Row-major with columns along x: cell (row 1, col 2) is data[1 * width + 2].
    assert msg.data[1 * 6 + 2] == 100 and msg.data[3 * 6 + 5] == 0
    cells, geom = conv.occupancy_msg_to_numpy(msg)
    np.testing.assert_array_equal(cells, occ)
    assert geom == GEOMETRY


def test_occupancy_grid_rejects_wrong_shape_and_values():
    with pytest.raises(InputError, match="4 rows x 6 columns"):
        conv.occupancy_to_msg(np.zeros((6, 4), np.int8), GEOMETRY, _header(), "base_link")
    with pytest.raises(InputError, match="-1 or 0..100"):
        conv.occupancy_to_msg(np.full((4, 6), 101, np.int16), GEOMETRY, _header(), "base_link")


def test_class_grid_is_lossless_for_every_uint8_id():
    classes = np.arange(24, dtype=np.uint8).reshape(4, 6) * 11  # 0 .. 253, crosses 127
    classes[0, 0] = 255
    msg = _roundtrip(conv.class_grid_to_msg(classes, GEOMETRY, _header(), "base_link"))
    assert msg.header.frame_id == "base_link" and msg.header.stamp == STAMP
    assert msg.data[0] == -1  # unknown shows as rviz's unknown
    back, geom = conv.class_grid_msg_to_numpy(msg)
    np.testing.assert_array_equal(back, classes)
    assert geom.width == 6


def test_objects_message_carries_stamp_vehicle_frame_and_fields():
    objects = [GroundObject(segment_id=5, category=13, class_name="car", score=0.9,
                            footprint=Footprint(x_m=12.5, y_m=-1.25, length_m=4.2, width_m=1.8, heading_rad=0.1),
                            range_m=12.6, covariance_xy=(0.36, 0.0, 0.0, 0.04), contact_columns=10,
                            contact_visible=True, truncated=False),
               GroundObject(segment_id=9, category=11, class_name="person", score=0.7,
                            footprint=Footprint(x_m=8.0, y_m=2.0, length_m=0.6, width_m=0.6, heading_rad=0.0),
                            range_m=8.2, covariance_xy=(0.04, 0.0, 0.0, 0.04), contact_columns=3,
                            contact_visible=True, truncated=False)]
    msg = _roundtrip(conv.objects_to_msg(objects, _header(), "base_link"))
    assert isinstance(msg, DetectedObjects)
    assert msg.header.frame_id == "base_link" and msg.header.stamp == STAMP
    car, person = msg.objects
    assert (car.segment_id, car.category_name, car.position.x, car.position.y) == (5, "car", 12.5, -1.25)
    assert car.length_m == pytest.approx(4.2) and car.position_sigma_m == pytest.approx(0.6)
    assert car.yaw_rad == pytest.approx(0.1)
    assert (person.category_name, person.length_m) == ("person", pytest.approx(0.6))


def test_projection_outputs_convert_directly():
    """geometry.projection's GroundObject and torch grids go in as they are."""
    torch = pytest.importorskip("torch", reason="torch not installed")
    obj = GroundObject(segment_id=4, category=13, class_name="car", score=0.8,
                       footprint=Footprint(x_m=15.0, y_m=1.0, length_m=4.4, width_m=1.8, heading_rad=0.2),
                       range_m=15.0, covariance_xy=(0.25, 0.0, 0.0, 0.04), contact_columns=10,
                       contact_visible=True, truncated=False)
    msg = conv.objects_to_msg([obj], _header(), "base_link")
    out = msg.objects[0]
    assert (out.segment_id, out.category_id, out.category_name) == (4, 13, "car")
    assert (out.position.x, out.length_m) == (15.0, pytest.approx(4.4))
    assert out.yaw_rad == pytest.approx(0.2) and out.position_sigma_m == pytest.approx(0.5)
    occ = torch.full((4, 6), -1, dtype=torch.int8)
    occ[0, 0] = 100
    grid = conv.occupancy_to_msg(occ, GEOMETRY, _header(), "base_link")
    assert grid.data[0] == 100 and grid.data[1] == -1
    classes = torch.full((4, 6), 255, dtype=torch.uint8)
    assert conv.class_grid_to_msg(classes, GEOMETRY, _header(), "base_link").data[0] == -1


def test_grid_conversion_is_vectorised_enough_for_a_large_grid():
    # A 400 x 400 grid must not go through per-cell Python in our code; this asserts correctness
    # on a realistic size (timing is in the bench, not here).
    occ = np.random.default_rng(1).choice(np.array([-1, 0, 100], np.int8), size=(400, 400))
    geom = GridGeometry(0.1, 0.0, -20.0, 400, 400)
    msg = _roundtrip(conv.occupancy_to_msg(occ, geom, _header(), "base_link"))
    np.testing.assert_array_equal(conv.occupancy_msg_to_numpy(msg)[0], occ)


@pytest.mark.ros
def test_outputs_cross_a_real_master(rospy_node):
    """What the node publishes arrives intact through roscore (tcpros, not just serialise())."""
    occ = np.zeros((4, 6), np.int8)
    occ[2, :] = 100
    sent = conv.occupancy_to_msg(occ, GEOMETRY, _header(), "base_link")
    got = round_trip(rospy_node, "/conv_test/grid", OccupancyGrid, sent)
    assert got is not None, "no OccupancyGrid came back through the master"
    assert got.header.stamp == STAMP and got.header.frame_id == "base_link"
    np.testing.assert_array_equal(conv.occupancy_msg_to_numpy(got)[0], occ)


def test_panoptic_type_is_the_package_message():
    msg = conv.panoptic_to_msg(np.zeros((2, 2), np.int32), [], _header(), load_label_space("cityscapes"))
    assert isinstance(msg, PanopticSegmentation)
    assert isinstance(conv.intrinsics_to_camera_info(Intrinsics.kitti(), _header()), CameraInfo)


def test_pipeline_frame_result_converts_as_it_is():
    """The Pipeline's FrameResult (segments, GridResult, GroundObjects) feeds every converter."""
    pytest.importorskip("torch", reason="torch not installed")
    from panoptic_perception.geometry.projection import GridResult
    from panoptic_perception.pipeline import FrameResult

    cityscapes = load_label_space("cityscapes")
    seg = np.zeros((8, 10), np.int32)
    seg[4:, :] = 1
    seg[1:3, 2:5] = 2
    cat = np.full((8, 10), 255, np.uint8)
    cat[seg == 1] = 0
    cat[seg == 2] = 13
    segments = [Segment(1, 0, 40, (0, 4, 10, 4), 1.0, category_name="road", is_thing=False),
                Segment(2, 13, 6, (2, 1, 3, 2), 0.9, category_name="car", is_thing=True)]
    obj = GroundObject(segment_id=2, category=13, class_name="car", score=0.9,
                       footprint=Footprint(x_m=9.0, y_m=0.5, length_m=4.4, width_m=1.8, heading_rad=0.0),
                       range_m=9.0, covariance_xy=(0.09, 0.0, 0.0, 0.01), contact_columns=3,
                       contact_visible=True, truncated=False)
    grid = GridResult(occupancy=np.zeros((4, 6), np.int8), class_grid=np.full((4, 6), 255, np.uint8),
                      log_odds=np.zeros((4, 6), np.float32), geometry=GEOMETRY, objects=[obj])
    frame = FrameResult(segment_map=seg, category_map=cat, segments=segments, grid=grid)
    pan = conv.panoptic_to_msg(frame.segment_map, frame.segments, _header(), cityscapes)
    assert [(s.id, s.category_name, s.is_thing, s.area) for s in pan.segments] == [
        (1, "road", False, 40), (2, "car", True, 6)]
    grid_msg = conv.occupancy_to_msg(frame.grid.occupancy, frame.grid.geometry, _header(), "base_link")
    assert (grid_msg.info.width, grid_msg.info.height) == (6, 4)
    assert conv.class_grid_to_msg(frame.grid.class_grid, frame.grid.geometry, _header(), "base_link").data[0] == -1
    objects = conv.objects_to_msg(frame.grid.objects, _header(), "base_link")
    assert objects.objects[0].position_sigma_m == pytest.approx(0.3)
