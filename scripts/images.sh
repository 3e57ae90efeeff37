#!/usr/bin/env bash
# Build the rankswap images (ranker, operator, training) from docker/Dockerfile with Debian's
# container tools, with no registry and no HTTPS inside the build (docs/NODE.md):
#
#   1. podman, buildah, runc, debootstrap, CNI plugins, ipset (kube-router on the test node): `apt-get install` when missing (root)
#   2. a base image: debootstrap of Debian bookworm (minbase) from the machine's Debian mirror
#      plus Python 3.11 from Debian packages; cached by a hash of its recipe, rebuilt only when
#      the recipe changes
#   3. a wheelhouse of the pinned closure (docker/constraints.txt), downloaded on the host
#   4. `podman build --target T` for each image with PYTHON_IMAGE=<that base> and PIP_OFFLINE=1,
#      network off; then an OCI archive of each image for `ctr images import` (rankswap_dev.localkube.node)
#
# The same Dockerfile builds elsewhere with `docker build` on the public python base (its
# defaults). Output: one line per image (name, size, archive) on stdout; progress on stderr.
#
# Environment:
#   RANKSWAP_CACHE   cache root (default ~/.cache/rankswap); images/ below it holds the base
#                    tarball, the wheelhouse, the build context and the OCI archives
#   IMAGES           targets to build (default "ranker operator training")
#   IMAGE_TAG        tag of the images (default: the version in pyproject.toml)
#   DEBIAN_MIRROR    Debian mirror for debootstrap (default: the first one in apt's sources)
#   PYTHON           interpreter for pip download (default .venv/bin/python, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RANKSWAP_CACHE="${RANKSWAP_CACHE:-${HOME}/.cache/rankswap}"
CACHE="${RANKSWAP_CACHE}/images"
IMAGES="${IMAGES:-ranker operator training}"
PYTHON="${PYTHON:-$([[ -x "${ROOT}/.venv/bin/python" ]] && echo "${ROOT}/.venv/bin/python" || echo python3)}"
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "${ROOT}/pyproject.toml" | head -1)}"

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

# The machine runs cgroups in hybrid mode (crun refuses it) and a hard RLIMIT_NOFILE of 20000
# (podman's default ulimits exceed it): runc, cgroupfs and ulimits under the hard limits.
PODMAN=(podman --runtime /usr/sbin/runc --cgroup-manager cgroupfs)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

mkdir -p "${CACHE}"
exec 8>"${CACHE}/.lock"
command -v flock >/dev/null 2>&1 && flock 8

# --- 1. tools ---------------------------------------------------------------------------------
ensure_tools() {
    local missing=() p
    for p in podman:podman buildah:buildah runc:/usr/sbin/runc debootstrap:/usr/sbin/debootstrap \
        containernetworking-plugins:/usr/lib/cni/bridge ipset:/usr/sbin/ipset; do
        local cmd="${p#*:}"
        if [[ "${cmd}" == /* ]]; then [[ -x "${cmd}" ]] || missing+=("${p%%:*}")
        else command -v "${cmd}" >/dev/null 2>&1 || missing+=("${p%%:*}"); fi
    done
    ((${#missing[@]} == 0)) && return
    [[ "$(id -u)" == 0 ]] || die "missing Debian packages ${missing[*]} (run as root or apt-get install them)"
    log "apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } \
        || die "apt-get install ${missing[*]} failed"
}

# --- 2. base image ----------------------------------------------------------------------------
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "${DEBIAN_MIRROR}"; return; fi
    local m
    m="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' | grep -v security | head -1)"
    [[ -n "${m}" ]] || m="$(grep -hE '^deb[[:space:]]+http' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -1)"
    [[ -n "${m}" ]] || die "no Debian mirror found in apt's sources; set DEBIAN_MIRROR"
    echo "${m}"
}

# Everything that decides the base's content; its hash names the image and its tarball.
BASE_SUITE=bookworm
BASE_PACKAGES=python3.11,python3-venv,libgomp1,ca-certificates
BASE_PRUNE="var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* usr/share/lintian var/log/*"
base_image() {
    local mirror key tag tarball
    mirror="$(debian_mirror)"
    key="$(printf 'debootstrap --variant=minbase --include=%s %s %s\nprune %s\npython3=/usr/bin/python3.11\n' \
        "${BASE_PACKAGES}" "${BASE_SUITE}" "${mirror}" "${BASE_PRUNE}" | sha256sum | cut -c1-12)"
    tag="localhost/rankswap-base:${BASE_SUITE}-${key}"
    tarball="${CACHE}/base-${BASE_SUITE}-${key}.tar"
    if "${PODMAN[@]}" image exists "${tag}"; then
        log "base ${tag}: cached"
    else
        if [[ ! -s "${tarball}" ]]; then
            local dir="${CACHE}/base-rootfs" start=${SECONDS}
            rm -rf "${dir}"
            log "base: debootstrap --variant=minbase ${BASE_SUITE} from ${mirror} (+ ${BASE_PACKAGES})"
            debootstrap --variant=minbase --include="${BASE_PACKAGES}" "${BASE_SUITE}" "${dir}" "${mirror}" >&2 \
                || die "debootstrap failed (log: ${dir}/debootstrap/debootstrap.log)"
            # shellcheck disable=SC2086  # the prune list is globs
            (cd "${dir}" && rm -rf ${BASE_PRUNE})
            ln -sf python3.11 "${dir}/usr/bin/python3"
            tar -C "${dir}" --numeric-owner -cf "${tarball}.tmp" .
            mv -f "${tarball}.tmp" "${tarball}"
            rm -rf "${dir}"
            log "base: rootfs $(du -h "${tarball}" | cut -f1) in $((SECONDS - start)) s"
        fi
        "${PODMAN[@]}" import --change 'CMD ["python3"]' "${tarball}" "${tag}" >/dev/null \
            || die "podman import ${tarball} failed"
        log "base ${tag}: imported"
    fi
    BASE_TAG="${tag}"
}

# --- 3. wheelhouse ----------------------------------------------------------------------------
wheelhouse() {
    local key dir
    key="$(cat "${ROOT}/docker/constraints.txt" <(sed -n '/^dependencies = \[/,/^\[project.scripts\]/p' "${ROOT}/pyproject.toml") \
        | sha256sum | cut -c1-12)"
    dir="${CACHE}/wheelhouse-${key}"
    if [[ -f "${dir}/.complete" ]]; then
        log "wheelhouse ${dir}: cached"
    else
        local start=${SECONDS}
        rm -rf "${dir}"
        mkdir -p "${dir}"
        # The same requirement list as scripts/docker-constraints.sh: the three runtime extras.
        "${PYTHON}" - "${ROOT}/pyproject.toml" "${dir}/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = list(project["dependencies"])
for extra in ("ranker", "operator", "training"):
    deps += [d for d in project["optional-dependencies"][extra] if not d.startswith("rankswap[")]
# the build backend of `pip install .` (pyproject.toml [build-system])
deps += ["setuptools>=77", "wheel"]
open(sys.argv[2], "w").write("\n".join(deps) + "\n")
PY
        log "wheelhouse: pip download of the pinned closure (binary wheels only)"
        "${PYTHON}" -m pip download -q --disable-pip-version-check --only-binary=:all: \
            -d "${dir}" -r "${dir}/requirements.txt" -c "${ROOT}/docker/constraints.txt" >&2 \
            || die "pip download failed"
        rm -f "${dir}/requirements.txt"
        touch "${dir}/.complete"
        log "wheelhouse: $(find "${dir}" -name '*.whl' | wc -l) wheels, $(du -sh "${dir}" | cut -f1), $((SECONDS - start)) s"
    fi
    WHEELHOUSE="${dir}"
}

# --- 4. images --------------------------------------------------------------------------------
build_context() {
    # What docker/.dockerignore admits, from the working tree (tracked and new files), plus the
    # wheelhouse as docker/wheelhouse/ (hard links: same file system, no copy).
    local ctx="${CACHE}/context"
    rm -rf "${ctx}"
    mkdir -p "${ctx}/docker"
    (cd "${ROOT}" && git ls-files -z -co --exclude-standard -- pyproject.toml README.md core training \
        ranker operator docker/constraints.txt docker/Dockerfile .dockerignore \
        | tar --null -T - -cf -) | tar -C "${ctx}" -xf -
    cp -al "${WHEELHOUSE}" "${ctx}/docker/wheelhouse" 2>/dev/null || cp -a "${WHEELHOUSE}" "${ctx}/docker/wheelhouse"
    CONTEXT="${ctx}"
}

build_images() {
    local target start size archive id
    for target in ${IMAGES}; do
        start=${SECONDS}
        local name="localhost/rankswap/${target}:${IMAGE_TAG}"
        log "${name}: podman build --target ${target}"
        "${PODMAN[@]}" build --layers --pull=never --network=none "${ULIMITS[@]}" \
            -f "${CONTEXT}/docker/Dockerfile" --target "${target}" \
            --build-arg "PYTHON_IMAGE=${BASE_TAG}" --build-arg PIP_OFFLINE=1 \
            -t "${name}" "${CONTEXT}" >&2 || die "podman build --target ${target} failed"
        id="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "${name}")"
        size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "${name}")"
        archive="${CACHE}/oci/${target}-${id:0:12}.tar"
        if [[ ! -s "${archive}" ]]; then
            mkdir -p "${CACHE}/oci"
            rm -f "${CACHE}/oci/${target}-"*.tar
            "${PODMAN[@]}" save --format oci-archive -o "${archive}.tmp" "${name}" >&2
            mv -f "${archive}.tmp" "${archive}"
        fi
        ln -sfn "$(basename "${archive}")" "${CACHE}/oci/${target}.tar"
        log "${name}: $((size / 1000000)) MB, $((SECONDS - start)) s"
        printf '%s %s %s\n' "${name}" "${size}" "${archive}"
    done
}

main() {
    local start=${SECONDS}
    ensure_tools
    base_image
    wheelhouse
    build_context
    build_images
    log "done in $((SECONDS - start)) s"
}

main "$@"
