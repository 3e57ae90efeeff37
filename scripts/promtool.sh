#!/usr/bin/env bash
# Build promtool (the Prometheus rule checker and rule unit-test runner) from the Go module
# proxy into a cache outside the repository, only when it is missing (or was made by a
# different recipe). Same cache, lock and stamp conventions as scripts/kube-tools.sh.
#
#   promtool  go install github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION
#             (the module's v0.3XX.Y tags are Prometheus 3.XX.Y)
#
# Output: the path of the promtool binary on the last line of stdout; progress goes to stderr.
#
# Environment:
#   PROMETHEUS_MODULE_VERSION  github.com/prometheus/prometheus version (default v0.316.0 = 3.16.0)
#   RANKSWAP_CACHE             cache root                               (default $HOME/.cache/rankswap)
#   GO                         go command                               (default go)
#   PROMTOOL_FORCE=1           rebuild
set -euo pipefail

PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
RANKSWAP_CACHE="${RANKSWAP_CACHE:-${HOME}/.cache/rankswap}"
ROOT="${RANKSWAP_CACHE}/prometheus/${PROMETHEUS_MODULE_VERSION}"
BIN_DIR="${ROOT}/bin"
GO="${GO:-go}"
FORCE="${PROMTOOL_FORCE:-0}"

log() { printf '[promtool] %s\n' "$*" >&2; }
die() { printf '[promtool] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "${BIN_DIR}"
exec 9>"${ROOT}/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

key="github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_MODULE_VERSION} go-install"
stamp="${BIN_DIR}/.promtool.stamp"
if [[ "${FORCE}" != "1" && -x "${BIN_DIR}/promtool" && "$(cat "${stamp}" 2>/dev/null || true)" == "${key}" ]]; then
    log "promtool ${PROMETHEUS_MODULE_VERSION}: cached"
else
    command -v "${GO}" >/dev/null 2>&1 || die "go not found (needed to build promtool); install Go >= 1.26"
    start=${SECONDS}
    log "promtool ${PROMETHEUS_MODULE_VERSION}: go install (a few minutes cold on 2 cores)"
    tmp="$(mktemp -d "${ROOT}/build.XXXXXX")"
    # CGO off: a static binary; GOTOOLCHAIN=local: never download a toolchain.
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS=-trimpath \
        "${GO}" install -ldflags "-s -w" \
        "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_MODULE_VERSION}" >&2 \
        || { rm -rf "${tmp}"; die "building promtool ${PROMETHEUS_MODULE_VERSION} failed"; }
    mv -f "${tmp}/promtool" "${BIN_DIR}/promtool"
    rm -rf "${tmp}"
    printf '%s\n' "${key}" >"${stamp}"
    log "promtool ${PROMETHEUS_MODULE_VERSION}: built in $((SECONDS - start)) s"
fi
echo "${BIN_DIR}/promtool"
