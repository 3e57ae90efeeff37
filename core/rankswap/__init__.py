"""rankswap: per-tenant ranking models served on Kubernetes and swapped at runtime.

This package holds what the parts share: the artifact contract (:mod:`rankswap.artifacts`),
the product database (:mod:`rankswap.productdb`), the feature definition
(:mod:`rankswap.featurespec`), logging and the command line entry point.
"""

__version__ = "0.1.0"
