"""Small worked examples on the core: spherical-bump classification.

    bumps       a toy dataset: random Gaussian bumps on the sphere, labelled by count
    classifier  SphericalClassifier, the gin example model
"""
