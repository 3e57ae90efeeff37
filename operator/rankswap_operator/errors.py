"""Errors of the operator, and what each means for kopf and for the resource's status.

::

    OperatorError                 base
    ├── InvalidSpec               permanent: the spec cannot be acted on; fix the resource
    ├── ArtifactUnavailable       temporary: the store did not answer; retried with back-off
    ├── BadArtifact               permanent for this generation: missing, corrupt or incompatible
    └── PodUnreachable            temporary: a pod's admin API did not answer

``InvalidSpec`` and ``BadArtifact`` set ``Degraded=True`` with their reason and are not retried
until the spec changes; the temporary ones are retried and shown in status meanwhile.
"""

from __future__ import annotations


class OperatorError(Exception):
    reason = "Error"


class InvalidSpec(OperatorError):
    reason = "InvalidSpec"


class ArtifactUnavailable(OperatorError):
    reason = "ArtifactUnavailable"


class BadArtifact(OperatorError):
    def __init__(self, message: str, *, reason: str = "BadArtifact") -> None:
        super().__init__(message)
        self.reason = reason


class PodUnreachable(OperatorError):
    reason = "PodUnreachable"
