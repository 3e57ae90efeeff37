#!/usr/bin/env bash
# Build the binaries of a real Kubernetes node into the same cache as scripts/kube-tools.sh,
# only when they are missing (or were made by a different recipe):
#
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#                   Go build of k8s.io/kubernetes@$KUBE_VERSION in the kube-apiserver wrapper
#                   module (scripts/kube-build/apiserver-$KUBE_VERSION lists them as tools)
#   containerd, containerd-shim-runc-v2, ctr
#                   Go build of github.com/containerd/containerd/v2@$CONTAINERD_VERSION in its own
#                   wrapper module (scripts/kube-build/containerd-$CONTAINERD_VERSION)
#   coredns         Go build of github.com/coredns/coredns@$COREDNS_VERSION in its own wrapper
#                   module (scripts/kube-build/coredns-$COREDNS_VERSION; main.go selects the
#                   plugins: kubernetes, cache, errors, log, health, ready, bind): cluster DNS
#   kube-router     Go build of github.com/cloudnativelabs/kube-router/v2@$KUBE_ROUTER_VERSION in its
#                   own wrapper module (scripts/kube-build/kube-router-$KUBE_ROUTER_VERSION); only its
#                   network policy controller runs (--run-firewall), so the test node enforces the
#                   chart's NetworkPolicy with iptables + ipset (ipset from Debian: scripts/images.sh)
#   pause           a static C program (scripts/kube-build/pause/pause.c, gcc -static), and
#                   pause.oci.tar: an OCI archive of a FROM-scratch image localhost/pause:3.10
#                   with it, for `ctr images import` (the upstream pause image cannot be pulled)
#
# runc and the CNI plugins come from Debian (runc, containernetworking-plugins: scripts/images.sh
# installs them). Output: the bin dir on the last line of stdout; progress goes to stderr.
#
# Environment: KUBE_VERSION (v1.35.4), CONTAINERD_VERSION (v2.1.6), RANKSWAP_CACHE,
# KUBE_TOOLS_BIN_DIR, GO, KUBE_TOOLS_FORCE=1 (as scripts/kube-tools.sh);
# COREDNS_VERSION (v1.14.7); KUBE_ROUTER_VERSION (v2.1.0, the only v2 on the proxy here);
# NODE_TOOLS_COMPONENTS (default "pause containerd kube coredns kube-router").
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.1.6}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
KUBE_MINOR="$(echo "${KUBE_VERSION#v}" | cut -d. -f2)"
RANKSWAP_CACHE="${RANKSWAP_CACHE:-${HOME}/.cache/rankswap}"
KUBE_ROOT="${RANKSWAP_CACHE}/kube/${KUBE_VERSION}"
BIN_DIR="${KUBE_TOOLS_BIN_DIR:-${KUBE_ROOT}/bin}"
GO="${GO:-go}"
FORCE="${KUBE_TOOLS_FORCE:-0}"
PAUSE_TAG=localhost/pause:3.10

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PINNED_DIR="${SCRIPT_DIR}/kube-build"

log() { printf '[node-tools] %s\n' "$*" >&2; }
die() { printf '[node-tools] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "${BIN_DIR}" "${KUBE_ROOT}"
# Its own lock: a node build does not wait for a kube-apiserver build in the same cache.
exec 9>"${KUBE_ROOT}/.node.lock"
command -v flock >/dev/null 2>&1 && flock 9

stamp_of() { cat "${BIN_DIR}/.${1}.stamp" 2>/dev/null || true; }
write_stamp() { printf '%s\n' "$2" >"${BIN_DIR}/.${1}.stamp"; }
up_to_date() { [[ "${FORCE}" != "1" && -e "${BIN_DIR}/$1" && "$(stamp_of "$1")" == "$2" ]]; }
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# go_build WORK_DIR PINNED_DIR TAGS LDFLAGS PACKAGE... : build PACKAGEs into BIN_DIR/<name>.tmp
go_build() {
    local work="$1" pinned="$2" tags="$3" ldflags="$4"
    shift 4
    command -v "${GO}" >/dev/null 2>&1 || die "go not found; install Go >= 1.25"
    [[ -f "${pinned}/go.mod" && -f "${pinned}/go.sum" ]] || die "wrapper module ${pinned} missing"
    mkdir -p "${work}/out"
    cp "${pinned}"/go.mod "${pinned}"/go.sum "${work}/"
    [[ -f "${pinned}/main.go" ]] && cp "${pinned}/main.go" "${work}/"
    (
        cd "${work}"
        export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
        "${GO}" build -trimpath -tags="${tags}" -ldflags "${ldflags}" -o "${work}/out/" "$@" >&2
    )
}

# --- kubelet, kube-controller-manager, kube-scheduler, kube-proxy ----------------------------
NODE_BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy)
build_kube_node() {
    local pinned="${PINNED_DIR}/apiserver-${KUBE_VERSION}" name todo=0
    local key="k8s.io/kubernetes@${KUBE_VERSION} go-wrapper=$(hash_of "${pinned}/go.mod" "${pinned}/go.sum") tags=selinux,notest"
    for name in "${NODE_BINARIES[@]}"; do up_to_date "${name}" "${key}" || todo=1; done
    if ((todo == 0)); then
        log "${NODE_BINARIES[*]} ${KUBE_VERSION}: cached"
        return
    fi
    local major="${KUBE_VERSION#v}" ldflags="-s -w" p start=${SECONDS}
    major="${major%%.*}"
    # The same version variables as upstream's hack/lib/version.sh (without them the node
    # reports v0.0.0-master+$Format:%H$).
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X ${p}.gitVersion=${KUBE_VERSION} -X ${p}.gitMajor=${major}"
        ldflags+=" -X ${p}.gitMinor=${KUBE_MINOR} -X ${p}.gitTreeState=clean"
        ldflags+=" -X ${p}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    log "${NODE_BINARIES[*]}: go build (many minutes cold on 2 cores; ~2.5 min with a warm Go build cache)"
    local pkgs=()
    for name in "${NODE_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${name}"); done
    go_build "${KUBE_ROOT}/build/node-${KUBE_VERSION}" "${pinned}" selinux,notest "${ldflags}" "${pkgs[@]}" \
        || die "building the node binaries ${KUBE_VERSION} failed"
    for name in "${NODE_BINARIES[@]}"; do
        mv -f "${KUBE_ROOT}/build/node-${KUBE_VERSION}/out/${name}" "${BIN_DIR}/${name}"
        write_stamp "${name}" "${key}"
    done
    log "${NODE_BINARIES[*]} ${KUBE_VERSION}: built in $((SECONDS - start)) s"
}

# --- containerd -------------------------------------------------------------------------------
CONTAINERD_BINARIES=(containerd containerd-shim-runc-v2 ctr)
build_containerd() {
    local pinned="${PINNED_DIR}/containerd-${CONTAINERD_VERSION}" name todo=0
    local key="github.com/containerd/containerd/v2@${CONTAINERD_VERSION} go-wrapper=$(hash_of "${pinned}/go.mod" "${pinned}/go.sum") tags=no_btrfs,no_devmapper,no_zfs"
    for name in "${CONTAINERD_BINARIES[@]}"; do up_to_date "${name}" "${key}" || todo=1; done
    if ((todo == 0)); then
        log "containerd ${CONTAINERD_VERSION}: cached"
        return
    fi
    local v=github.com/containerd/containerd/v2/version start=${SECONDS}
    local ldflags="-s -w -X ${v}.Version=${CONTAINERD_VERSION} -X ${v}.Revision=go-proxy -X ${v}.Package=github.com/containerd/containerd/v2"
    log "containerd ${CONTAINERD_VERSION}: go build (containerd, shim, ctr)"
    local pkgs=()
    for name in "${CONTAINERD_BINARIES[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/${name}"); done
    go_build "${KUBE_ROOT}/build/containerd-${CONTAINERD_VERSION}" "${pinned}" no_btrfs,no_devmapper,no_zfs "${ldflags}" "${pkgs[@]}" \
        || die "building containerd ${CONTAINERD_VERSION} failed"
    for name in "${CONTAINERD_BINARIES[@]}"; do
        mv -f "${KUBE_ROOT}/build/containerd-${CONTAINERD_VERSION}/out/${name}" "${BIN_DIR}/${name}"
        write_stamp "${name}" "${key}"
    done
    log "containerd ${CONTAINERD_VERSION}: built in $((SECONDS - start)) s"
}

# --- coredns ----------------------------------------------------------------------------------
build_coredns() {
    local pinned="${PINNED_DIR}/coredns-${COREDNS_VERSION}"
    local key="github.com/coredns/coredns@${COREDNS_VERSION} go-wrapper=$(hash_of "${pinned}/go.mod" "${pinned}/go.sum" "${pinned}/main.go")"
    if up_to_date coredns "${key}"; then
        log "coredns ${COREDNS_VERSION}: cached"
        return
    fi
    local start=${SECONDS}
    log "coredns ${COREDNS_VERSION}: go build"
    go_build "${KUBE_ROOT}/build/coredns-${COREDNS_VERSION}" "${pinned}" "" "-s -w" . \
        || die "building coredns ${COREDNS_VERSION} failed"
    mv -f "${KUBE_ROOT}/build/coredns-${COREDNS_VERSION}/out/coredns" "${BIN_DIR}/coredns"
    write_stamp coredns "${key}"
    log "coredns ${COREDNS_VERSION}: built in $((SECONDS - start)) s"
}

# --- kube-router (network policy only) ----------------------------------------------------------
build_kube_router() {
    local pinned="${PINNED_DIR}/kube-router-${KUBE_ROUTER_VERSION}"
    local key="github.com/cloudnativelabs/kube-router/v2@${KUBE_ROUTER_VERSION} go-wrapper=$(hash_of "${pinned}/go.mod" "${pinned}/go.sum")"
    if up_to_date kube-router "${key}"; then
        log "kube-router ${KUBE_ROUTER_VERSION}: cached"
        return
    fi
    local v=github.com/cloudnativelabs/kube-router/v2/pkg/version start=${SECONDS}
    local ldflags="-s -w -X ${v}.Version=${KUBE_ROUTER_VERSION} -X ${v}.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    log "kube-router ${KUBE_ROUTER_VERSION}: go build"
    go_build "${KUBE_ROOT}/build/kube-router-${KUBE_ROUTER_VERSION}" "${pinned}" "" "${ldflags}" \
        github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
        || die "building kube-router ${KUBE_ROUTER_VERSION} failed"
    mv -f "${KUBE_ROOT}/build/kube-router-${KUBE_ROUTER_VERSION}/out/kube-router" "${BIN_DIR}/kube-router"
    write_stamp kube-router "${key}"
    log "kube-router ${KUBE_ROUTER_VERSION}: built in $((SECONDS - start)) s"
}

# --- pause ------------------------------------------------------------------------------------
build_pause() {
    local src="${PINNED_DIR}/pause/pause.c"
    local key="gcc -static -O2 pause.c=$(hash_of "${src}") image=${PAUSE_TAG}"
    if up_to_date pause "${key}" && up_to_date pause.oci.tar "${key}"; then
        log "pause: cached"
        return
    fi
    command -v gcc >/dev/null 2>&1 || die "gcc not found (needed for the static pause binary)"
    command -v podman >/dev/null 2>&1 || die "podman not found (run scripts/images.sh first: it installs it)"
    local work="${KUBE_ROOT}/build/pause"
    rm -rf "${work}"
    mkdir -p "${work}"
    gcc -static -O2 -Wall -Werror -o "${work}/pause" "${src}" >&2 || die "gcc -static pause.c failed"
    strip "${work}/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"${work}/Containerfile"
    local podman=(podman --runtime /usr/sbin/runc --cgroup-manager cgroupfs)
    "${podman[@]}" build --pull=never --network=none -q -t "${PAUSE_TAG}" -f "${work}/Containerfile" "${work}" >&2 \
        || die "podman build of ${PAUSE_TAG} failed"
    "${podman[@]}" save --format oci-archive -o "${work}/pause.oci.tar" "${PAUSE_TAG}" >&2
    mv -f "${work}/pause" "${BIN_DIR}/pause"
    mv -f "${work}/pause.oci.tar" "${BIN_DIR}/pause.oci.tar"
    write_stamp pause "${key}"
    write_stamp pause.oci.tar "${key}"
    log "pause: built (${PAUSE_TAG})"
}

main() {
    local c
    for c in ${NODE_TOOLS_COMPONENTS:-pause containerd kube coredns kube-router}; do
        case "${c}" in
            pause) build_pause ;;
            containerd) build_containerd ;;
            kube) build_kube_node ;;
            coredns) build_coredns ;;
            kube-router) build_kube_router ;;
            *) die "unknown component ${c} (pause, containerd, kube, coredns, kube-router)" ;;
        esac
    done
    echo "${BIN_DIR}"
}

main "$@"
