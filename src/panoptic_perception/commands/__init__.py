"""One module per CLI subcommand.

Each module defines HELP (one line), add_arguments(parser) and run(args) -> int. Modules import
heavy dependencies (torch, ROS) inside run() so `--help` stays fast.
"""
