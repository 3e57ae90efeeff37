#!/usr/bin/env bash
# Build vegeta (an open-loop HTTP load generator, Go) from the Go module proxy into a cache
# outside the repository, only when it is missing (or was made by a different recipe). Same
# cache, lock and stamp conventions as scripts/promtool.sh. The `cost` benchmark section uses it
# for its fixed-rate open-loop runs (docs/BENCHMARKS.md).
#
#   vegeta  go install github.com/tsenart/vegeta/v12@$VEGETA_VERSION
#
# Output: the path of the vegeta binary on the last line of stdout; progress goes to stderr.
#
# Environment:
#   VEGETA_VERSION   github.com/tsenart/vegeta/v12 version (default v12.13.0)
#   RANKSWAP_CACHE   cache root                            (default $HOME/.cache/rankswap)
#   GO               go command                            (default go)
#   VEGETA_FORCE=1   rebuild
set -euo pipefail

VEGETA_VERSION="${VEGETA_VERSION:-v12.13.0}"
RANKSWAP_CACHE="${RANKSWAP_CACHE:-${HOME}/.cache/rankswap}"
ROOT="${RANKSWAP_CACHE}/vegeta/${VEGETA_VERSION}"
BIN_DIR="${ROOT}/bin"
GO="${GO:-go}"
FORCE="${VEGETA_FORCE:-0}"

log() { printf '[vegeta] %s\n' "$*" >&2; }
die() { printf '[vegeta] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "${BIN_DIR}"
exec 9>"${ROOT}/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

key="github.com/tsenart/vegeta/v12@${VEGETA_VERSION} go-install"
stamp="${BIN_DIR}/.vegeta.stamp"
if [[ "${FORCE}" != "1" && -x "${BIN_DIR}/vegeta" && "$(cat "${stamp}" 2>/dev/null || true)" == "${key}" ]]; then
    log "vegeta ${VEGETA_VERSION}: cached"
else
    command -v "${GO}" >/dev/null 2>&1 || die "go not found (needed to build vegeta)"
    start=${SECONDS}
    log "vegeta ${VEGETA_VERSION}: go install (~20 s on 2 cores)"
    tmp="$(mktemp -d "${ROOT}/build.XXXXXX")"
    # CGO off: a static binary; GOTOOLCHAIN=local: never download a toolchain.
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS=-trimpath \
        "${GO}" install -ldflags "-s -w" "github.com/tsenart/vegeta/v12@${VEGETA_VERSION}" >&2 \
        || { rm -rf "${tmp}"; die "building vegeta ${VEGETA_VERSION} failed"; }
    mv -f "${tmp}/vegeta" "${BIN_DIR}/vegeta"
    rm -rf "${tmp}"
    printf '%s\n' "${key}" >"${stamp}"
    log "vegeta ${VEGETA_VERSION}: built in $((SECONDS - start)) s"
fi
echo "${BIN_DIR}/vegeta"
