"""The known-ops table: a failure names the documented deterministic alternative."""

from harness.platform.known_ops import alternative_for


def test_failures_suggest_the_documented_alternative():
    assert alternative_for("SparseTensorDenseMatMul/SparseTensorDenseMatMul A deterministic GPU "
                           "implementation of SparseTensorDenseMatmulOp is not currently available") == \
        "a dense matmul (tf.sparse.to_dense first)"
    assert alternative_for("Conv2D") is None  # deterministic with op determinism: nothing to replace
