"""Public test helpers: the equivariance harness and shared reference oracles.

    equivariance  compare layer(rotate(x)) with rotate(layer(x)); `assert_equivariant`
"""
