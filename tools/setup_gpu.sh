#!/usr/bin/env bash
# `make setup GPU=1`: the CUDA builds of torch, torch-tensorrt + TensorRT and onnxruntime-gpu into .venv,
# after the ordinary setup. Refuses on a machine without an NVIDIA driver, before installing anything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python="$root/.venv/bin/python"

if [ "$(uname -m)" != "x86_64" ]; then
  echo "setup GPU=1: this installs x86-64 CUDA wheels; on $(uname -m) (e.g. a Jetson) use JetPack's own" \
       "torch, torchvision and TensorRT instead (README, 'GPU')." >&2
  exit 2
fi
driver=""
if [ -r /proc/driver/nvidia/version ]; then
  driver=$(head -1 /proc/driver/nvidia/version)
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
fi
if [ -z "$driver" ]; then
  echo "setup GPU=1: no NVIDIA driver on this machine (no /proc/driver/nvidia/version, no working" \
       "nvidia-smi); nothing installed. Use 'make setup' for the CPU build." >&2
  exit 2
fi
echo "setup GPU=1: NVIDIA driver found: $driver"

# onnxruntime and onnxruntime-gpu install the same module; only one may be present.
"$python" -m pip uninstall -q -y onnxruntime || true
"$python" -m pip install -q -r "$root/requirements-gpu.txt"
if [ "$("$python" -c 'import torch; print(torch.version.cuda is not None)')" != "True" ]; then
  # A CPU build of torch with the same version number (from a local wheel folder) satisfied the pin.
  echo "setup GPU=1: torch is a CPU build; replacing it with the registry's CUDA build"
  empty=$(mktemp -d)
  PIP_FIND_LINKS="$empty" "$python" -m pip install -q --force-reinstall --no-deps "torch==2.13.0"
  rmdir "$empty"
fi
"$python" - <<'PY'
import torch
import torch_tensorrt  # noqa: F401 - must import
import onnxruntime as ort

if not torch.cuda.is_available():
    raise SystemExit("setup GPU=1: torch was installed with CUDA " + str(torch.version.cuda)
                     + " but sees no GPU: check that the driver supports this CUDA version")
print(f"setup GPU=1: torch {torch.__version__} (CUDA {torch.version.cuda}) on {torch.cuda.get_device_name(0)}, "
      f"torch-tensorrt {torch_tensorrt.__version__}, onnxruntime providers {ort.get_available_providers()}")
PY
touch "$root/.build/.gpu.stamp"
