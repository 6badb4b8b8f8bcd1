"""The synthetic street world's drives (`synth`), read like KITTI raw plus its panoptic truth.

  DIR/DATE/DATE_drive_XXXX_sync/image_02/data/0000000000.png
  DIR/DATE/DATE_drive_XXXX_sync/gt/panoptic.json            COCO panoptic, Cityscapes train ids
  DIR/DATE/DATE_drive_XXXX_sync/gt/panoptic/0000000000.png
`DIR` may also be one date folder or one drive folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from panoptic_perception.data.datasets.base import CocoPanopticDataset, Sample
from panoptic_perception.data.label_mapping import LabelMapping, load_label_mapping
from panoptic_perception.errors import InputError


def find_drives(root: str | Path) -> List[Path]:
    """Drive folders (those with gt/panoptic.json) under root, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"synthetic data folder not found: {root}")
    drives = {
        p.parent.parent
        for pattern in ("gt/panoptic.json", "*/gt/panoptic.json", "*/*/gt/panoptic.json")
        for p in root.glob(pattern)
    }
    if not drives:
        raise InputError(
            f"no drive with gt/panoptic.json under {root} (expected DATE/DATE_drive_XXXX_sync/gt/)"
        )
    return sorted(drives)


def _image_resolver(drive: Path):
    image_dir = drive / "image_02" / "data"

    def image_path_of(image: dict, ann: dict) -> Path:
        name = str(image.get("file_name") or "")
        for candidate in (drive / name, image_dir / Path(name).name) if name else ():
            if candidate.is_file():
                return candidate
        return image_dir / f"{ann['image_id']}.png"

    return image_path_of


class SyntheticDataset:
    """All frames of one or more synthetic drives, in drive then frame order."""

    def __init__(
        self, root: str | Path | Sequence[str | Path], mapping: LabelMapping | str = "synthetic"
    ) -> None:
        if isinstance(mapping, str):
            mapping = load_label_mapping(mapping)
        roots = [root] if isinstance(root, (str, Path)) else list(root)
        self.drives = sorted({d for r in roots for d in find_drives(r)})
        self.parts = [
            CocoPanopticDataset(
                d / "gt" / "panoptic.json",
                d / "gt" / "panoptic",
                d / "image_02" / "data",
                mapping,
                image_path_of=_image_resolver(d),
            )
            for d in self.drives
        ]
        self._index = [(p, i) for p, part in enumerate(self.parts) for i in range(len(part))]
        self.mapping = mapping

    @property
    def label_space(self):
        return self.mapping.space

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> Sample:
        part, i = self._index[index]
        sample = self.parts[part][i]
        sample["drive"] = self.drives[part].name
        return sample
