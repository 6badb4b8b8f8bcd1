"""Imports point one way (docs/ARCHITECTURE.md): core <- ros <- commands, and data never imports eval.

Walks every module's imports with ast, function-local ones included, so a cycle cannot hide behind
an import inside a function.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

from repo_paths import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "panoptic_perception"
ROS_MODULES = ("rospy", "rosbag", "roslib", "roslaunch", "rosgraph", "message_filters", "tf2_ros", "cv_bridge",
               "sensor_msgs", "std_msgs", "nav_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs")
UPPER = {"ros": ("commands", "benchmarks", "cli"), "core": ("ros", "commands", "benchmarks", "cli")}


def _layer_and_part(path: Path) -> Tuple[str, str]:
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if part == "ros":
        return "ros", part
    if part in ("commands", "benchmarks", "cli", "__main__"):
        return "commands", part
    return "core", part


def _imports(path: Path) -> Iterator[Tuple[int, str]]:
    module = ".".join(("panoptic_perception",) + path.relative_to(PACKAGE).with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # `from panoptic_perception import ros` imports a package
                yield node.lineno, f"{name}.{alias.name}"


def violations() -> List[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer, part = _layer_and_part(path)
        where = path.relative_to(PACKAGE.parent)
        for line, name in _imports(path):
            top = name.split(".")[0]
            if layer == "core" and top in ROS_MODULES:
                found.append(f"{where}:{line}: core imports {name}")
            if not name.startswith("panoptic_perception."):
                continue
            target = name.split(".")[1]
            if target in UPPER.get(layer, ()):
                found.append(f"{where}:{line}: {layer} imports {name}")
            if part == "data" and target == "eval":
                found.append(f"{where}:{line}: data imports {name}")
    return _first_per_line(found)


def _first_per_line(found: List[str]) -> List[str]:
    """One message per import line: the shortest name (`a.b` before the `a.b.name` it imports from)."""
    by_line = {}
    for message in sorted(found, key=len):
        by_line.setdefault(message.split(": ")[0], message)
    return sorted(by_line.values())


def test_imports_point_one_way() -> None:
    assert violations() == []


def test_the_checker_sees_function_local_imports(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "panoptic_perception"
    (fake / "data").mkdir(parents=True)
    (fake / "geometry").mkdir()
    (fake / "data" / "reader.py").write_text("def f():\n    from panoptic_perception.eval.pq import x\n")
    (fake / "geometry" / "grid.py").write_text("def g():\n    import rospy\n    from ..ros import node\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert violations() == [
        "panoptic_perception/data/reader.py:2: data imports panoptic_perception.eval.pq",
        "panoptic_perception/geometry/grid.py:2: core imports rospy",
        "panoptic_perception/geometry/grid.py:3: core imports panoptic_perception.ros",
    ]
