"""Public test helpers: the equivariance harness and shared reference oracles.

    equivariance  compare layer(rotate(x)) with rotate(layer(x)); `assert_equivariant`
    mixed         a tiny WB2/ERA5-style dataset mixing smooth fields, winds, an SST
                  with NaN over land and precipitation (regridding tests)
"""
