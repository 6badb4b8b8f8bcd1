from __future__ import annotations

import os
import shutil

import pytest
from rosharness import RosMaster

ROS_TOOLS = ("roscore", "roslaunch", "rosbag", "rostopic")


def _missing_ros_tools():
    return [tool for tool in ROS_TOOLS if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def ros_master(tmp_path_factory):
    """One real roscore for the session's ROS tests; stopped by its own pids at the end."""
    missing = _missing_ros_tools()
    if missing:
        pytest.skip(f"ROS tools not installed: {', '.join(missing)} (run `make setup`)")
    master = RosMaster(tmp_path_factory.mktemp("ros_home")).start()
    yield master
    master.stop()


@pytest.fixture(scope="session")
def rospy_node(ros_master):
    """This test process as a ROS node (rospy allows one init per process)."""
    import rospy

    os.environ.update({k: v for k, v in ros_master.env.items() if k.startswith("ROS")})
    rospy.init_node("pytest_probe", anonymous=True, disable_signals=True)
    yield rospy
    rospy.signal_shutdown("tests done")
