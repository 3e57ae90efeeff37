"""Errors of the operator, and what each means for the reconcile loop and the resource's status.

::

    OperatorError                   base: ``reason`` is the condition reason it is reported with,
    │                               ``temporary`` whether the loop retries it by itself
    ├── InvalidSpec                 permanent: the spec cannot be acted on; fix the resource
    ├── StoreUnavailable            temporary: the artifact store did not answer
    ├── AdminTokenUnavailable       temporary: the admin token Secret is missing or unreadable
    ├── KubeError                   temporary: the API server refused or failed a call
    └── PodUnreachable              temporary, per pod: one pod's admin API did not answer

An error that stops a reconcile pass is written to status by :func:`~rankswap_operator.plan.
plan_blocked` (``Ready=False``, ``Progressing=False``, ``Degraded`` with the error's reason;
``Degraded=True``, or ``Unknown`` while the store is down since nothing is known of the pods)
and posted as a Warning Event when its reason is new. A permanent error waits for the spec to
change (a spec change wakes the loop); a temporary one is retried with a back-off
(:func:`~rankswap_operator.plan.retry_delay`). ``PodUnreachable`` never stops a pass: the pod
is reported ``Unreachable`` and ``Degraded=PodUnreachable``.

A desired bundle that is missing, corrupt or incompatible is not an error of the operator but a
value (:class:`~rankswap_operator.plan.TargetProblem`) that the planner acts on: pods are kept
on the last good bundle.
"""

from __future__ import annotations

from typing import ClassVar, Literal


class OperatorError(Exception):
    reason: ClassVar[str] = "OperatorError"
    temporary: ClassVar[bool] = True
    degraded: ClassVar[Literal["True", "Unknown"]] = "Unknown"
    """``Degraded`` while this error stops the passes: Unknown when nothing is known of the pods."""


class InvalidSpec(OperatorError):
    reason = "InvalidSpec"
    temporary = False
    degraded = "True"


class StoreUnavailable(OperatorError):
    reason = "StoreUnavailable"


class AdminTokenUnavailable(OperatorError):
    reason = "AdminTokenUnavailable"
    degraded = "True"


class KubeError(OperatorError):
    reason = "KubeError"


class PodUnreachable(OperatorError):
    reason = "PodUnreachable"
