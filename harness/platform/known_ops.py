"""TensorFlow ops with known GPU determinism issues, from TF's docs and NVIDIA's
framework-reproducibility status pages (docs/references.md, "TensorFlow determinism").

Two kinds:
- `fixed`: nondeterministic on a GPU without op determinism (cuDNN algorithm
  choice, atomics); deterministic with it since the TF version given. These
  are the ops that make `kernels` differ from `control` on a GPU.
- `raises`: no deterministic GPU kernel; under op determinism TF raises
  UnimplementedError, and a trial fails with status `nondeterministic_op`.

Keys are op types as they appear in a traced graph (forward and gradient ops).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class KnownOp:
    kind: str  # "fixed" or "raises"
    what: str
    since: str | None = None  # TF version whose op determinism makes it deterministic
    alternative: str | None = None  # for "raises": what to use instead


def _fixed(since: str, what: str) -> KnownOp:
    return KnownOp("fixed", what, since)


def _raises(what: str, alternative: str) -> KnownOp:
    return KnownOp("raises", what, alternative=alternative)


KNOWN_OPS: dict[str, KnownOp] = {
    # cuDNN convolution: algorithm choice (autotuning) and backprop kernels.
    "Conv2D": _fixed("1.14", "cuDNN convolution algorithm choice"),
    "Conv2DBackpropFilter": _fixed("1.14", "cuDNN convolution backprop (filter)"),
    "Conv2DBackpropInput": _fixed("1.14", "cuDNN convolution backprop (input)"),
    "Conv3DBackpropFilterV2": _fixed("1.14", "cuDNN 3D convolution backprop (filter)"),
    "Conv3DBackpropInputV2": _fixed("1.14", "cuDNN 3D convolution backprop (input)"),
    "BiasAddGrad": _fixed("2.1", "bias_add backprop (atomics)"),
    "ResizeBilinearGrad": _fixed("2.4", "bilinear resize backprop"),
    "SoftmaxCrossEntropyWithLogits": _fixed("2.6", "softmax cross-entropy"),
    "SparseSoftmaxCrossEntropyWithLogits": _fixed("2.7", "sparse softmax cross-entropy"),
    "UnsortedSegmentSum": _fixed("2.7", "unsorted segment sum (atomics; also gather backprop)"),
    "UnsortedSegmentProd": _fixed("2.7", "unsorted segment reduction (atomics)"),
    "UnsortedSegmentMax": _fixed("2.7", "unsorted segment reduction (atomics)"),
    "UnsortedSegmentMin": _fixed("2.7", "unsorted segment reduction (atomics)"),
    "SegmentSum": _fixed("2.7", "segment reduction (atomics)"),
    "SegmentMean": _fixed("2.7", "segment reduction (atomics)"),
    "SparseSegmentSum": _fixed("2.7", "sparse segment reduction (atomics)"),
    "SparseSegmentMean": _fixed("2.7", "sparse segment reduction (atomics)"),
    "SparseSegmentSumGrad": _fixed("2.7", "sparse segment reduction backprop (atomics)"),
    "SparseSegmentMeanGrad": _fixed("2.7", "sparse segment reduction backprop (atomics)"),
    "ScatterNd": _fixed("2.7", "scatter_nd (deterministic via the CPU: slow)"),
    "TensorScatterAdd": _fixed("2.7", "tensor scatter add (deterministic via the CPU: slow)"),
    "DepthwiseConv2dNativeBackpropFilter": _fixed("2.10", "depthwise convolution backprop (filter)"),
    # No deterministic GPU kernel: raise UnimplementedError under op determinism.
    "FusedBatchNormGradV3": _raises("fused batch-norm backprop with training=False",
                                    "batch norm with training=True, or without fusion (fused=False)"),
    "ResizeNearestNeighborGrad": _raises("nearest-neighbour resize backprop",
                                         "bilinear resize (deterministic since 2.4)"),
    "CropAndResizeGradImage": _raises("crop_and_resize backprop (image)", "crop and resize on the CPU"),
    "CropAndResizeGradBoxes": _raises("crop_and_resize backprop (boxes)", "crop and resize on the CPU"),
    "AdjustContrastv2": _raises("adjust_contrast", "the contrast formula written with ordinary ops"),
    "Bincount": _raises("bincount", "a one-hot sum or unsorted segment sum"),
    "DenseBincount": _raises("bincount", "a one-hot sum or unsorted segment sum"),
    "SparseTensorDenseMatMul": _raises("sparse-dense matmul", "a dense matmul (tf.sparse.to_dense first)"),
}


# Op types that draw random numbers from a state (an op seed, or none): equal inputs (a shape), new values.
# Their stateless forms (StatelessRandomNormalV2, ...) are functions of their seed input and are not listed.
RANDOM_OP_TYPES = frozenset({
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt", "TruncatedNormal", "RandomShuffle",
    "RandomGamma", "RandomPoisson", "RandomPoissonV2", "Multinomial", "ParameterizedTruncatedNormal",
    "RngReadAndSkip", "RngSkip", "StatefulStandardNormalV2", "StatefulUniform", "StatefulUniformInt",
    "StatefulUniformFullInt", "StatefulTruncatedNormal"})

# Environment variables that change which kernels run, and the cause each names.
ENVIRONMENT_CAUSES = {
    "TF_XLA_FLAGS": "XLA fusion",
    "TF_ENABLE_ONEDNN_OPTS": "oneDNN",
    "TF_NUM_INTRAOP_THREADS": "thread count",
    "TF_NUM_INTEROP_THREADS": "thread count",
    "OMP_NUM_THREADS": "thread count",
}


def alternative_for(text: str) -> str | None:
    """The documented alternative to an op with no deterministic GPU kernel named in `text` (an op or message)."""
    compact = text.replace(" ", "").lower()
    for op_type, known in KNOWN_OPS.items():
        if known.kind == "raises" and op_type.lower() in compact:
            return known.alternative
    return None
