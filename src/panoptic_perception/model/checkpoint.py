"""Model checkpoints: weights + the ModelConfig they belong to + free-form metadata, as plain data.

A checkpoint is a torch zip file holding one dict
    {"format": "panoptic_perception.checkpoint", "version": 1,
     "state_dict": {name: tensor}, "config": to_dict(ModelConfig), "meta": {...plain data...}}
read back with `torch.load(weights_only=True)`, so loading a model file never executes code: a
pickle that would call anything other than tensor rebuilding is refused by torch's restricted
unpickler and reported as ModelFileError naming the file.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from panoptic_perception.config import from_dict, to_dict
from panoptic_perception.errors import ConfigError, InputError, ModelFileError
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.model.safe_pickle import load_restricted

CHECKPOINT_FORMAT = "panoptic_perception.checkpoint"
CHECKPOINT_VERSION = 1

# What torch.load raises on a damaged file (truncated zip, bad pickle stream, bad storage).
_READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
                KeyError, IndexError, TypeError, AttributeError, ImportError)
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Only data that weights_only=True can read back (and that JSON could hold)."""
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise InputError(f"{where}: {type(value).__name__} is not plain data "
                     "(str, number, bool, None, list, dict)")


def _unpickling_reason(message: str) -> Tuple[bool, str]:
    """(references code?, the informative line) from torch's weights_only error text.

    torch's first line advises retrying with weights_only=False, which is exactly what must not
    be done with an untrusted file, so only the line naming the actual problem is passed on.
    """
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return True, line
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    specific = [ln for ln in lines if not ln.startswith(boilerplate)]
    return False, specific[0] if specific else (lines[0] if lines else "unreadable pickle")


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], config: ModelConfig,
                    meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Write a checkpoint atomically (temp file + rename, so a crash never leaves half a model file)."""
    path = Path(path)
    if not isinstance(config, ModelConfig):
        raise InputError(f"save_checkpoint({path}): config must be a ModelConfig, "
                         f"got {type(config).__name__}")
    tensors: Dict[str, torch.Tensor] = {}
    for name, value in state_dict.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise InputError(f"save_checkpoint({path}): state_dict entry {name!r} is not a named tensor")
        tensors[name] = value.detach().cpu()
    meta_dict = dict(meta or {})
    _check_plain(meta_dict, "meta")
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state_dict": tensors,
               "config": to_dict(config), "meta": meta_dict}
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Mapping[str, Any], path: str | Path) -> Path:
    """torch.save through a temp file + rename, so a crash never leaves half a file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(payload), handle)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def read_foreign_torch_file(path: Path) -> Any:
    """A torch file written elsewhere (detectron2 .pth, torchvision weights), read with weights_only=True;
    ModelFileError naming the file and the line that says why when it cannot be read without code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged / code-carrying files
        first = str(exc).strip().splitlines()
        reason = next((ln for ln in first if "GLOBAL" in ln), first[0] if first else type(exc).__name__)
        raise ModelFileError(f"{path} could not be read as a torch checkpoint without running code: "
                             f"{reason}") from exc


def read_foreign_weights_file(path: Path, what: str) -> Tuple[Mapping[str, Any], str]:
    """(payload mapping, "pth" | "pkl") of a weights file written elsewhere, chosen by content (a torch
    zip, else a pickle through the restricted unpickler); ModelFileError naming `what` and the file."""
    if not path.is_file():
        raise ModelFileError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{what} {path} is empty")
    if zipfile.is_zipfile(path):
        payload, kind = read_foreign_torch_file(path), "pth"
    else:
        payload, kind = load_restricted(path), "pkl"
    if not isinstance(payload, Mapping):
        raise ModelFileError(f"{path} holds a {type(payload).__name__}, not a {what} mapping")
    return payload, kind


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> Tuple[Dict[str, torch.Tensor], ModelConfig, Dict[str, Any]]:
    """(state_dict, ModelConfig, meta) from a checkpoint; ModelFileError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        code, reason = _unpickling_reason(str(exc))
        if code:
            raise ModelFileError(f"checkpoint {path} refused: it references code, not just tensors and plain "
                                 f"data, and is never unpickled with code enabled ({reason})") from exc
        raise ModelFileError(f"checkpoint {path} is truncated or corrupt: {reason}") from exc
    except _READ_ERRORS as exc:
        raise ModelFileError(f"checkpoint {path} is truncated or corrupt: {exc}") from exc

    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not a panoptic_perception checkpoint (no format tag "
                             f"'{CHECKPOINT_FORMAT}'); detectron2 .pkl weights go through import-weights")
    version = payload.get("version")
    if not isinstance(version, int) or not 1 <= version <= CHECKPOINT_VERSION:
        raise ModelFileError(f"checkpoint {path} has version {version!r}; "
                             f"this code reads 1..{CHECKPOINT_VERSION}")
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise ModelFileError(f"checkpoint {path}: 'state_dict' is not a mapping of names to tensors")
    meta = payload.get("meta", {})
    if not isinstance(meta, dict):
        raise ModelFileError(f"checkpoint {path}: 'meta' is not a mapping")
    try:
        config = from_dict(ModelConfig, payload.get("config"), where=f"{path}:config")
    except ConfigError as exc:
        raise ModelFileError(f"checkpoint {path} has an invalid model config: {exc}") from exc
    return state_dict, config, meta


def apply_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load weights strictly; any missing, unexpected or mis-shaped tensor is a ModelFileError naming them."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    problems: List[str] = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:8]) + (f" ... (+{len(items) - 8})" if len(items) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ModelFileError(f"weights from {source} do not fit the model: " + "; ".join(problems))
    module.load_state_dict(dict(state_dict), strict=True)
