"""Does an exported graph convert to TensorRT as a whole? (checked without TensorRT)

torch-tensorrt's dynamo path lowers an ExportedProgram to core ATen ops (decompositions), then converts
every node with a registered converter whose capability validator accepts it; the rest run in PyTorch
(or fail the build with require_full_compilation=True). This module repeats the first two steps here:
`export_for_tensorrt` decomposes the model as torch-tensorrt does, `find_unsupported` lists every op
outside trt_supported_ops.SUPPORTED_OPS or failing a validator condition, with where in the model
(module path and source line) it comes from, so the model engineers know what to change.
"""
from __future__ import annotations

import operator
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional

import torch
from torch import nn

from panoptic_perception.runtime import trt_supported_ops as trt_ops
from panoptic_perception.runtime.base import GraphInputs

_ALLOWED_CAST_DTYPES = {torch.float32, torch.float16, torch.int32, torch.int64, torch.bool, torch.int8}
_MAX_TOPK = 3840


@dataclass
class OpProblem:
    op: str
    reason: str
    locations: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = "; ".join(self.locations[:4]) + (f"; ... (+{len(self.locations) - 4})"
                                                 if len(self.locations) > 4 else "")
        return f"{self.op}: {self.reason} at {where}"


def trt_decomposition_table() -> dict:
    """The decomposition table torch-tensorrt lowers with on torch >= 2.6 (its get_decompositions()):
    its enabled set (trt_supported_ops.TRT_DECOMPOSITIONS) + every CompositeImplicitAutograd aten op's
    own decomposition, minus the ops it keeps whole (TRT_KEPT_WHOLE)."""
    from torch._decomp import get_decompositions
    from torch._export.utils import _collect_all_valid_cia_ops_for_aten_namespace, _get_decomp_for_cia

    table = {}
    for op in _collect_all_valid_cia_ops_for_aten_namespace():
        if str(op) not in trt_ops.TRT_KEPT_WHOLE:
            table[op] = _get_decomp_for_cia(op)
    ops = []
    for name in trt_ops.TRT_DECOMPOSITIONS:
        packet, _, overload = name.partition(".")
        op = getattr(torch.ops.aten, packet, None)
        if op is not None and overload:
            op = getattr(op, overload, None)
        if op is not None:  # ops this torch no longer has are skipped
            ops.append(op)
    table.update(get_decompositions(ops))
    return {op: fn for op, fn in table.items() if str(op) not in trt_ops.TRT_KEPT_WHOLE}


def export_for_tensorrt(model: nn.Module, example: torch.Tensor, image_size: Optional[torch.Tensor] = None
                        ) -> torch.export.ExportedProgram:
    """torch.export + torch-tensorrt's decomposition set: the graph torch-tensorrt partitions and converts.

    With image_size, the panoptic model's graph as the TensorRT backend builds it: GraphInputs, both
    inputs (see runtime.base)."""
    with torch.no_grad():
        if image_size is None:
            program = torch.export.export(model.eval(), (example,), strict=False)
        else:
            program = torch.export.export(GraphInputs(model.eval()), (example, image_size), strict=False)
    return program.run_decompositions(trt_decomposition_table())


def op_name(target) -> str:
    if target is operator.getitem:
        return "_operator.getitem"
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(target)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__name__', repr(target))}"


def node_location(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    module = list(stack.values())[-1][0] if stack else "<top>"
    trace = node.meta.get("stack_trace") or ""
    lines = re.findall(r'File "([^"]+)", line (\d+)', trace)
    src = ""
    for path, line in reversed(lines):  # innermost frame inside this package
        if "panoptic_perception" in path or "test" in path:
            src = f"{path.split('src/')[-1]}:{line}"
            break
    return f"{module} ({src})" if src else module


def graph_ops(program: torch.export.ExportedProgram) -> Dict[str, int]:
    """op name -> number of call_function nodes using it."""
    counts: Dict[str, int] = {}
    for node in program.graph.nodes:
        if node.op == "call_function":
            name = op_name(node.target)
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _val(arg):
    return arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None


def _only_first_output_used(node: torch.fx.Node) -> bool:
    users = list(node.users)
    return len(users) == 1 and users[0].target is operator.getitem and users[0].args[1] == 0


def validator_failure(node: torch.fx.Node) -> Optional[str]:
    """Why a supported op's converter would still reject this node (None: accepted)."""
    name = op_name(node.target)
    args = node.args
    if name == "aten.topk.default" and int(args[1]) > _MAX_TOPK:
        return f"topk k={args[1]} > {_MAX_TOPK}"
    if name == "aten.sort.default":
        val = _val(args[0])
        dim = args[1] if len(args) > 1 else -1
        if val is not None and int(val.shape[dim]) > _MAX_TOPK:
            return f"sort over {int(val.shape[dim])} > {_MAX_TOPK} elements"
    if name == "aten._to_copy.default":
        dtype = node.kwargs.get("dtype")
        if dtype is None:
            return "_to_copy without dtype (a device/layout copy)"
        if dtype not in _ALLOWED_CAST_DTYPES:
            return f"cast to {dtype}"
    if name == "aten.index.Tensor":
        for index in args[1]:
            val = _val(index)
            if val is not None and val.dtype not in (torch.int32, torch.int64):
                return f"index with a {val.dtype} tensor (boolean mask indexing)"
    if name == "aten.convolution.default" and any(int(v) != 0 for v in args[7]):
        return f"convolution output_padding {list(args[7])}"
    if name in ("aten.max_pool1d.default", "aten.max_pool2d.default", "aten.max_pool3d.default"):
        dilation = args[4] if len(args) > 4 else 1
        if any(int(d) != 1 for d in (dilation if isinstance(dilation, (list, tuple)) else [dilation])):
            return f"max_pool dilation {dilation}"
    if name in ("aten.avg_pool2d.default",) and len(args) > 6 and args[6] is not None:
        return "avg_pool divisor_override"
    if name in ("aten.max.dim", "aten.min.dim", "aten.native_group_norm.default",
                "aten.native_layer_norm.default", "aten.native_batch_norm.default",
                "aten._native_batch_norm_legit_no_training.default") and not _only_first_output_used(node):
        return "more than the first output used"
    if name.startswith("aten.bitwise_"):
        for arg in args:
            val = _val(arg)
            if val is not None and val.dtype != torch.bool:
                return f"bitwise op on {val.dtype} (converter takes bool only)"
    if name == "aten.index_put.default":
        if len(args) > 3 and args[3]:
            return "index_put with accumulate=True"
        val = _val(args[0])
        if val is not None and len(args[1]) != val.dim():
            return "index_put with fewer indices than input dims (broadcasting)"
    return None


def input_dependent_nodes(program: torch.export.ExportedProgram) -> set:
    """Nodes whose value depends on the user input (the image).

    torch-tensorrt freezes weights and runs a constant-folding pass before partitioning, so a node that
    depends only on weights and constants (e.g. a zeros_like/empty_strided of a static shape) becomes a
    constant and never needs a converter.
    """
    user_inputs = set(program.graph_signature.user_inputs)
    dependent = set()
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name in user_inputs:
                dependent.add(node)
        elif any(arg in dependent for arg in node.all_input_nodes):
            dependent.add(node)
    return dependent


def find_unsupported(program: torch.export.ExportedProgram,
                     supported: FrozenSet[str] = trt_ops.SUPPORTED_OPS,
                     ignored: Iterable[str] = trt_ops.REMOVED_BY_LOWERING) -> List[OpProblem]:
    """Every op (with locations) that torch-tensorrt could not convert; [] means one whole engine."""
    ignored = set(ignored)
    dependent = input_dependent_nodes(program)
    problems: OrderedDict[tuple, OpProblem] = OrderedDict()
    for node in program.graph.nodes:
        if node.op != "call_function" or node not in dependent:
            continue
        name = op_name(node.target)
        if name in ignored:
            continue
        reason = "no torch-tensorrt converter" if name not in supported else validator_failure(node)
        if reason is None:
            continue
        problem = problems.setdefault((name, reason), OpProblem(name, reason))
        location = node_location(node)
        if location not in problem.locations:
            problem.locations.append(location)
    return list(problems.values())


def coverage_report(problems: List[OpProblem]) -> str:
    if not problems:
        return "all ops have torch-tensorrt converters"
    return "ops torch-tensorrt cannot convert:\n" + "\n".join(f"  - {p}" for p in problems)
