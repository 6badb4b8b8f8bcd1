"""ROS adapter: conversions, parameters, publishers. The only place that imports rospy."""
