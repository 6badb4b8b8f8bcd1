"""Camera panoptic perception: Panoptic FPN, occupancy-grid projection, ROS node.

The package's Python code lives in src/; the message classes catkin generates
(`panoptic_perception.msg`) live in the catkin devel space. Extending __path__ lets both
halves import as one package whichever comes first on sys.path.
"""
import os
import pkgutil

# OpenMP threads that spin while waiting for work steal the CPU from every other process (rosbag,
# rviz, the node's own ROS threads). On the 2-core development machine under load, torch ran a frame
# in 5.2 s with the default policy and 0.38 s with PASSIVE (bench pipeline, bench/RESULTS.md). It
# must be set before torch loads libgomp, so here, first; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__path__ = pkgutil.extend_path(__path__, __name__)  # noqa: F821 - set by the import system

__version__ = "0.1.0"
