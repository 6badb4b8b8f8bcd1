from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_perception.config import from_dict
from panoptic_perception.errors import ConfigError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import (
    EvidenceConfig,
    GridConfig,
    GridExtent,
    load_grid_config,
    occupancy_from_log_odds,
)
from panoptic_perception.geometry.projection import GroundProjector
from panoptic_perception.labels import load_label_space


def test_default_grid_follows_occupancy_grid_row_major_semantics():
    cfg = load_grid_config()
    geo = cfg.grid.geometry()
    assert (geo.width, geo.height) == (300, 200)  # 60 m ahead, +/-20 m, 0.2 m cells
    assert (geo.origin_x_m, geo.origin_y_m) == (0.0, -20.0)
    x, y = geo.cell_centers()
    # cell (row, col) = origin + (col + 0.5, row + 0.5) * resolution; rows run along +y (left)
    assert x[7, 11] == pytest.approx(0.0 + 11.5 * 0.2)
    assert y[7, 11] == pytest.approx(-20.0 + 7.5 * 0.2)
    row, col, inside = geo.cell_of(np.array([0.1, 59.9, 61.0, 5.0]), np.array([-19.9, 19.9, 0.0, -20.5]))
    assert list(inside) == [True, True, False, False]
    assert (row[0], col[0]) == (0, 0)
    assert (row[1], col[1]) == (199, 299)


def test_grid_yaml_carries_priors_for_every_cityscapes_thing():
    cfg = load_grid_config()
    labels = load_label_space("cityscapes")
    for cid in labels.thing_ids:
        name = labels.categories[cid].name
        assert name in cfg.thing_priors, name
    assert cfg.prior_for("bus").length_m > cfg.prior_for("car").length_m > cfg.prior_for("person").length_m


@pytest.mark.parametrize("data, match", [
    ({"grid": {"resolution_m": 0.0}}, "resolution_m"),
    ({"grid": {"x_min_m": 10.0, "x_max_m": 5.0}}, "extent"),
    ({"free_classes": ["road"], "obstacle_classes": ["road"]}, "both free and obstacle"),
    ({"thing_priors": {"car": {"length_m": -1.0}}}, "positive"),
    ({"evidnce": {}}, "evidnce"),
    ({"min_pixels_per_cell": 0}, "min_pixels_per_cell"),
    ({"max_pixels_per_cell": 4, "min_pixels_per_cell": 5}, "min_pixels_per_cell"),
])
def test_bad_grid_config_is_named(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(GridConfig, data)


def test_unknown_class_names_are_rejected_when_the_projector_is_built():
    labels = load_label_space("cityscapes")
    with pytest.raises(ConfigError, match="free_classes.*roadd"):
        GroundProjector(Camera(), GridConfig(free_classes=("roadd",)), labels)
    with pytest.raises(ConfigError, match="not a thing"):
        GroundProjector(Camera(), from_dict(GridConfig, {"thing_priors": {"road": {}}}), labels)


def test_log_odds_thresholds_give_three_states():
    ev = EvidenceConfig(free_threshold=-0.5, occupied_threshold=0.5)
    lo = torch.tensor([[-3.0, -0.5, -0.2, 0.0, 0.3, 0.5, 9.0]])
    occ = occupancy_from_log_odds(lo, ev)
    assert occ.dtype == torch.int8
    assert occ.tolist() == [[0, 0, -1, -1, -1, 100, 100]]


def test_extent_rounds_cell_counts_despite_float_noise():
    geo = GridExtent(resolution_m=0.1, x_min_m=0.3, x_max_m=0.6, y_min_m=-0.7, y_max_m=0.7).geometry()
    assert (geo.width, geo.height) == (3, 14)
