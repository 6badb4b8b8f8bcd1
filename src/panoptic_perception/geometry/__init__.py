"""Camera model, ground-plane projection, occupancy grid, objects. ROS-free."""
