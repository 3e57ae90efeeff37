#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl) are on this machine: the tests start
# a throwaway cluster of their own with them. Installs Debian's `postgresql` package when missing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "${RANKSWAP_PG_BINDIR:-}" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL server binaries are missing; install Debian's 'postgresql' package (or set RANKSWAP_PG_BINDIR)" >&2
  exit 1
fi
echo "installing Debian's postgresql package (the tests start their own throwaway cluster)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian starts a system cluster on install; the tests never use it.
(command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
   pg_ctlcluster "$ver" "$name" stop || true; done) || true
