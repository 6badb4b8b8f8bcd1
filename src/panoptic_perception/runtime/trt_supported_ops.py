"""ATen ops that torch-tensorrt's dynamo path converts to TensorRT layers.

Source (read through the code search tool, not imported: torch_tensorrt is not installable here):
  repository  https://github.com/pytorch/TensorRT
  commit      8f1076616ffe7870ae72f9537e06b94e87b5c891
  files       py/torch_tensorrt/dynamo/conversion/aten_ops_converters.py   (@dynamo_tensorrt_converter)
              py/torch_tensorrt/dynamo/conversion/ops_evaluators.py        (getitem, detach, arange)
              py/torch_tensorrt/dynamo/conversion/prims_ops_converters.py  (prims.broadcast_in_dim)
  version     the 2.x line with `supports_dynamic_shapes` converters, native_group_norm, grid_sampler_2d,
              index_put, cdist, sort/topk validators (k <= 3840) - the registry 2.13/2.14 build on. Later
              releases only add converters, so a graph inside this list stays convertible.

Conditions that converters check (capability validators) are in CONDITIONS and checked by
op_coverage.py on the node's arguments. Update this file (and SOURCE) when pinning a newer release.
"""
from __future__ import annotations

from typing import Dict, FrozenSet

SOURCE: Dict[str, str] = {
    "repository": "https://github.com/pytorch/TensorRT",
    "commit": "8f1076616ffe7870ae72f9537e06b94e87b5c891",
    "file": "py/torch_tensorrt/dynamo/conversion/aten_ops_converters.py",
    "target_release": "torch-tensorrt 2.13 (torch 2.13)",
}

_CONVERTERS = """
native_batch_norm.default batch_norm.default _native_batch_norm_legit_no_training.default
native_layer_norm.default layer_norm.default native_group_norm.default group_norm.default
cat.default embedding.default embedding_bag.default _embedding_bag.default
fmod.Scalar fmod.Tensor grid_sampler.default grid_sampler_2d.default
relu.default sigmoid.default sym_size.int index.Tensor tanh.default leaky_relu.default elu.default
softplus.default hardsigmoid.default gelu.default
matmul.default dot.default mm.default mv.default bmm.default
rsqrt.default neg.default squeeze.dim squeeze.dims erf.default unsqueeze.default _softmax.default
split.Tensor split.sizes split_with_sizes.default where.self
clamp.default clamp.Tensor clip.default clip.Tensor gather.default scatter.src scatter.value
select.int index_put.default slice.Tensor cumsum.default tile.default as_strided.default permute.default
clone.default _to_copy.default expand.default amax.default amin.default
sum.default sum.dim_IntList prod.default prod.dim_int max.default max.dim min.default min.dim
mean.default mean.dim exp.default expm1.default log.default log2.default log10.default log1p.default
sqrt.default reciprocal.default abs.default sin.default cos.default tan.default sinh.default cosh.default
asin.default acos.default atan.default asinh.default acosh.default atanh.default atan2.default atan2.out
ceil.default floor.default logical_not.default sign.default round.default isinf.default isnan.default
add.Tensor add.Scalar mul.Tensor mul.Scalar maximum.default minimum.default sub.Tensor sub.Scalar
div.Tensor div.Tensor_mode div.Scalar div.Scalar_mode
pow.Tensor_Tensor pow.Scalar pow.Tensor_Scalar floor_divide.default floor_divide.Scalar
logical_and.default logical_or.default logical_xor.default
bitwise_and.Tensor bitwise_and.Scalar bitwise_and.Scalar_Tensor
bitwise_or.Tensor bitwise_or.Scalar bitwise_or.Scalar_Tensor
bitwise_xor.Tensor bitwise_xor.Scalar bitwise_xor.Scalar_Tensor bitwise_not.default
eq.Tensor eq.Scalar ne.Tensor ne.Scalar gt.Tensor gt.Scalar ge.Tensor ge.Scalar
lt.Tensor lt.Scalar le.Tensor le.Scalar
convolution.default linear.default _cdist_forward.default
avg_pool1d.default avg_pool2d.default avg_pool3d.default adaptive_avg_pool1d.default
adaptive_avg_pool2d.default _adaptive_avg_pool2d.default adaptive_avg_pool3d.default
_adaptive_avg_pool3d.default max_pool1d.default max_pool2d.default max_pool3d.default
reshape.default view.default pixel_shuffle.default pixel_unshuffle.default resize_.default
argmax.default argmin.default addmm.default constant_pad_nd.default
reflection_pad1d.default reflection_pad2d.default reflection_pad3d.default
replication_pad1d.default replication_pad2d.default replication_pad3d.default
_pad_circular.default pad.default
upsample_nearest1d.default upsample_nearest2d.default upsample_nearest3d.default upsample_linear1d.default
upsample_bilinear2d.default upsample_trilinear3d.default upsample_bicubic2d.default
upsample_nearest1d.vec upsample_nearest2d.vec upsample_nearest3d.vec upsample_linear1d.vec
upsample_bilinear2d.vec upsample_trilinear3d.vec upsample_bicubic2d.vec
topk.default sort.default trunc.default copy.default remainder.Scalar remainder.Tensor
any.default any.dim any.dims _pdist_forward.default flip.default diagonal.default scalar_tensor.default
roll.default index_select.default native_dropout.default _prelu_kernel.default arange.start_step full.default
detach.default
"""
# (upsample_*.vec: the same file registers py_impl kernels that lower .vec to the .default converters.)

SUPPORTED_OPS: FrozenSet[str] = frozenset(
    {f"aten.{name}" for name in _CONVERTERS.split()}
    | {"prims.sum.default", "prims.div.default", "prims.broadcast_in_dim.default", "_operator.getitem"}
)

# Graph nodes torch-tensorrt's lowering (py/torch_tensorrt/dynamo/lowering/) removes or rewrites into
# supported ops before conversion: passes remove_assert_nodes, remove_detach, replace_full_like_with_full,
# replace_max_pool_with_indices; decompositions in _decompositions.py (alias, lift_fresh_copy, _unsafe_view).
REMOVED_BY_LOWERING: FrozenSet[str] = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default", "aten.sym_constrain_range.default",
    "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg",
    "aten.full_like.default", "aten.alias.default", "aten.lift_fresh_copy.default",
    "aten._unsafe_view.default",
    "aten.max_pool2d_with_indices.default",
})

# op -> the validator condition, as the converter file states it (checked in op_coverage.py)
CONDITIONS: Dict[str, str] = {
    "aten.topk.default": "k <= 3840",
    "aten.sort.default": "sorted dimension <= 3840",
    "aten._to_copy.default": "dtype in float32, float16, int32, int64, bool, int8",
    "aten.index.Tensor": "index tensors int32/int64 (no boolean masks)",
    "aten.convolution.default": "output_padding 0",
    "aten.max_pool2d.default": "dilation 1",
    "aten.avg_pool2d.default": "no divisor_override",
    "aten.max.dim": "only the values output used",
    "aten.min.dim": "only the values output used",
    "aten.bitwise_and.Tensor": "bool operands",
    "aten.bitwise_or.Tensor": "bool operands",
    "aten.bitwise_xor.Tensor": "bool operands",
    "aten.bitwise_not.default": "bool operand",
    "aten.index_put.default": "accumulate=False, one index per input dim",
    "aten.native_group_norm.default": "only the output used",
    "aten.native_layer_norm.default": "only the output used",
    "aten._native_batch_norm_legit_no_training.default": "only the output used",
}

# torch-tensorrt does NOT lower with torch's whole core-ATen table. Its get_decompositions()
# (py/torch_tensorrt/dynamo/lowering/_decompositions.py, torch >= 2.6 branch) applies this explicit set
# (torch_enabled_decompositions in _decomposition_groups.py, pytorch/TensorRT commit
# 2cf68ae948061241154a4aa49713fb8dae0cd736) plus every CompositeImplicitAutograd aten op's decomposition,
# minus torch_disabled_decompositions (TRT_KEPT_WHOLE). op_coverage.export_for_tensorrt does the same, so
# the checked graph is the one torch-tensorrt converts.
TRT_DECOMPOSITIONS = """
_adaptive_avg_pool2d_backward addcdiv addcdiv_ addcmul addcmul_ addr aminmax arange.default
arange.start avg_pool2d_backward binary_cross_entropy binary_cross_entropy_backward
binary_cross_entropy_with_logits celu col2im count_nonzero cudnn_batch_norm
cudnn_batch_norm_backward deg2rad detach diag_embed diagonal_backward dot elu_backward
_embedding_bag embedding_dense_backward _euclidean_dist.default expand_as eye fill frac
_fused_moving_avg_obs_fq_helper gelu gelu_backward glu_backward grid_sampler_2d hardshrink
hardshrink_backward hardsigmoid hardsigmoid_backward hardswish hardswish_ hardswish_backward
hardtanh hardtanh_ hardtanh_backward heaviside huber_loss huber_loss_backward im2col index_add
index_add_ index_copy index_copy_ index_fill index_fill_ index_select isneginf isposinf l1_loss
leaky_relu leaky_relu_ leaky_relu_backward lerp linspace logaddexp logaddexp2 logit logit_backward
log_sigmoid_backward log_sigmoid_forward _log_softmax _log_softmax_backward_data logspace
logsumexp.default masked_fill masked_fill_ max_pool2d_with_indices_backward mish mse_loss
mse_loss_backward mvlgamma nansum nan_to_num narrow native_batch_norm_backward
_native_batch_norm_legit _native_batch_norm_legit_functional native_dropout_backward
native_group_norm_backward native_layer_norm_backward new_empty new_full new_ones new_zeros
nll_loss_backward nll_loss_forward norm ones ones_like _prelu_kernel _prelu_kernel_backward
_reshape_alias rad2deg renorm renorm_ rot90 rsub select_backward select_scatter sgn sigmoid_backward
silu silu_ silu_backward sinc slice_backward smooth_l1_loss smooth_l1_loss_backward soft_margin_loss
soft_margin_loss_backward _softmax.out _softmax_backward_data softplus softplus_backward softshrink
softshrink_backward special_entr special_log_ndtr special_xlog1py stack std t tanh_backward
threshold threshold_backward trace transpose.int tril.default triu.default unbind unfold
unfold_backward unfold_copy _unsafe_index upsample_bilinear2d upsample_bilinear2d.vec
upsample_nearest2d_backward var var_mean xlogy zero zero_ zeros zeros_like clamp_min clamp_max
linalg_vector_norm full repeat
""".split()
TRT_KEPT_WHOLE: FrozenSet[str] = frozenset({"aten._softmax.default"})
