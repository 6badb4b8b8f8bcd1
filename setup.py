# Used by catkin_python_setup() only; do not run directly (pip installs nothing here).
from catkin_pkg.python_setup import generate_distutils_setup
from setuptools import setup

setup(**generate_distutils_setup(
    packages=[
        "panoptic_perception",
        "panoptic_perception.commands",
        "panoptic_perception.data",
        "panoptic_perception.eval",
        "panoptic_perception.geometry",
        "panoptic_perception.model",
        "panoptic_perception.ros",
        "panoptic_perception.runtime",
    ],
    package_dir={"": "src"},
))
