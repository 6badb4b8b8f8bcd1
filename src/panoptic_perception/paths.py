"""Where the package's shipped files are, whether run from the repo or a catkin install."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _find_share_root() -> Path:
    # Repo layout: <root>/src/panoptic_perception; installed: <share>/panoptic_perception/
    for candidate in (PACKAGE_DIR.parent.parent, PACKAGE_DIR.parent):
        if (candidate / "config").is_dir() and (candidate / "package.xml").is_file():
            return candidate
    try:  # installed with catkin: config/ lives in the package's share directory
        import rospkg

        return Path(rospkg.RosPack().get_path("panoptic_perception"))
    except Exception:  # noqa: BLE001 - fall back to the source layout guess
        return PACKAGE_DIR.parent.parent


SHARE_ROOT = _find_share_root()
CONFIG_DIR = SHARE_ROOT / "config"
MODELS_DIR = SHARE_ROOT / "models"
