# Used by catkin_python_setup() only; do not run directly (pip installs nothing here).
from catkin_pkg.python_setup import generate_distutils_setup
from setuptools import find_packages, setup

# Every package under src/ (subpackages included), so the install space holds all of them.
setup(**generate_distutils_setup(packages=find_packages("src"), package_dir={"": "src"}))
