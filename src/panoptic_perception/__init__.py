"""Camera panoptic perception: Panoptic FPN, occupancy-grid projection, ROS node.

The package's Python code lives in src/; the message classes catkin generates
(`panoptic_perception.msg`) live in the catkin devel space. Extending __path__ lets both
halves import as one package whichever comes first on sys.path.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)  # noqa: F821 - set by the import system

__version__ = "0.1.0"
