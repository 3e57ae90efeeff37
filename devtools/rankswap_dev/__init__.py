"""Developer tools of rankswap: never installed, never in an image (README, "Layout").

* :mod:`rankswap_dev.localkube` - a real Kubernetes control plane as local processes, ranker
  pods as local processes, the whole stack on one machine, and the pytest fixtures;
* :mod:`rankswap_dev.launch` - the one way to start a ranker or an operator process;
* :mod:`rankswap_dev.wait` - :func:`~rankswap_dev.wait.wait_until`, the one poll loop;
* :mod:`rankswap_dev.demo` - ``make demo``;
* :mod:`rankswap_dev.bench_ranker` - ``make bench``; :mod:`rankswap_dev.bench_rollout` -
  ``make bench-rollout``.

The runtime packages (``rankswap``, ``rankswap_training``, ``rankswap_ranker``,
``rankswap_operator``) never import this package (an import-linter contract checks it).
"""
