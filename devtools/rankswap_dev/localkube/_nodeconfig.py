"""Pure parts of a real single-node cluster: its addresses and its configuration files.

Every address of the cluster lives inside a network namespace of its own and on the one veth
link that joins it to this machine (docs/NODE.md, "Network"):

    this machine  <host_ip>/30 ──veth── <node_ip>/30  netns  (apiserver, etcd, kubelet, ...)
                                                     └─ bridge cni0 <pod gateway>/24 ── pods
    Service ClusterIPs: iptables rules of kube-proxy inside the netns only

The netns has no default route, so nothing from a pod or a Service is routed beyond this machine.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# 10.213.N.0/30 link, 10.214.N.0/24 pods, 10.215.N.0/24 Services: one N per running cluster.
LINK_BASE = "10.213"
POD_BASE = "10.214"
SERVICE_BASE = "10.215"
MAX_INDEX = 255
APISERVER_PORT = 6443
PAUSE_IMAGE = "localhost/pause:3.10"
CLUSTER_DOMAIN = "cluster.local"


class NodeConfigError(ValueError):
    """No free address block, or an invalid input to the node configuration."""


@dataclass(frozen=True)
class NodeNetwork:
    """The addresses and link names of the node cluster number ``index``."""

    index: int

    @property
    def name(self) -> str:
        """Node name, network namespace name and cgroup root (one name for all three)."""
        return f"rankswap-node-{self.index}"

    @property
    def host_link(self) -> str:
        return f"rsn{self.index}h"  # <= 15 characters (IFNAMSIZ)

    @property
    def node_link(self) -> str:
        return f"rsn{self.index}n"

    @property
    def host_ip(self) -> str:
        return f"{LINK_BASE}.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"{LINK_BASE}.{self.index}.2"

    @property
    def link_cidr(self) -> str:
        return f"{LINK_BASE}.{self.index}.0/30"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_BASE}.{self.index}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"{SERVICE_BASE}.{self.index}.0/24"

    @property
    def service_ip(self) -> str:
        """The ClusterIP of the ``kubernetes`` Service (first address of the range)."""
        return f"{SERVICE_BASE}.{self.index}.1"

    @property
    def server(self) -> str:
        return f"https://{self.node_ip}:{APISERVER_PORT}"

    def networks(self) -> list[ipaddress.IPv4Network]:
        return [
            ipaddress.IPv4Network(c) for c in (self.link_cidr, self.pod_cidr, self.service_cidr)
        ]


def choose_network(used: Iterable[str], netns_names: Iterable[str]) -> NodeNetwork:
    """The first cluster index whose three blocks overlap none of the ``used`` networks (routes
    and addresses on this machine, CIDR strings) and whose netns name is not taken."""
    taken = []
    for cidr in used:
        try:
            taken.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    names = set(netns_names)
    for index in range(MAX_INDEX + 1):
        net = NodeNetwork(index)
        if net.name in names:
            continue
        if any(
            mine.overlaps(other) for mine in net.networks() for other in taken if other.version == 4
        ):
            continue
        return net
    raise NodeConfigError(f"no free block in {LINK_BASE}/{POD_BASE}/{SERVICE_BASE}.0-255.x")


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def containerd_config(work: Path, *, runc: str, cni_bin_dir: str) -> str:
    """containerd 2.x (config version 3) with CRI on a socket in ``work``.

    ``restrict_oom_score_adj``: the OOM score cannot be lowered here, and without it the pause
    container fails (``can't get final child's PID from pipe: EOF``).
    """
    return f"""version = 3
root = {_toml_str(str(work / "containerd" / "root"))}
state = {_toml_str(str(work / "containerd" / "state"))}

[grpc]
  address = {_toml_str(str(work / "containerd.sock"))}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {_toml_str(PAUSE_IMAGE)}

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  # pods' network namespaces under the state dir (unmounted with the work dir), not /run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = {_toml_str(runc)}
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [{_toml_str(cni_bin_dir)}]
    conf_dir = {_toml_str(str(work / "cni" / "net.d"))}
    max_conf_num = 1
"""


def cni_conflist(net: NodeNetwork, work: Path) -> dict[str, Any]:
    """One bridge inside the netns: pods get an address of the pod block and a default route to
    the bridge (which leads nowhere beyond the netns); no masquerading to other networks."""
    return {
        "cniVersion": "1.0.0",
        "name": "rankswap",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(work / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    net: NodeNetwork, work: Path, *, cgroup_root: str, cluster_dns: bool
) -> dict[str, Any]:
    """KubeletConfiguration for this machine: cgroupfs on cgroup v1 (hybrid mode), no swap
    check, anonymous read access to its API (only reachable inside the netns); with
    ``cluster_dns`` the pods resolve through CoreDNS on the node IP."""
    dns: dict[str, Any] = (
        {"clusterDNS": [net.node_ip], "clusterDomain": CLUSTER_DOMAIN} if cluster_dns else {}
    )
    return {
        **dns,
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{work / 'containerd.sock'}",
        "authentication": {
            "anonymous": {"enabled": True},
            "webhook": {"enabled": False},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 60,
        "podPidsLimit": -1,
        "registerNode": True,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(net: NodeNetwork, kubeconfig: Path) -> dict[str, Any]:
    """kube-proxy (iptables) inside the netns. ``masqueradeAll``: a reply from a pod to a pod on
    the same bridge would otherwise bypass the Service's reverse NAT. Conntrack sysctls are
    left alone (0 = do not set)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": net.pod_cidr,
        "hostnameOverride": net.name,
        "bindAddress": net.node_ip,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"masqueradeAll": True},
    }


def corefile(net: NodeNetwork, kubeconfig: Path) -> str:
    """CoreDNS on the node IP: Services and pods of the cluster only. No `forward`: names
    outside the cluster do not resolve (nothing is routed outside anyway)."""
    return f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {net.node_ip}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig} {net.name}
        pods insecure
    }}
    cache 5
}}
.:53 {{
    bind {net.node_ip}
    errors
}}
"""


def mounts_below(mountinfo: str, roots: Iterable[Path]) -> list[str]:
    """Mount points in ``/proc/self/mountinfo`` text that lie in one of ``roots``, deepest
    first (the order to unmount them in)."""
    prefixes = [str(r).rstrip("/") for r in roots]
    found: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def yaml_of(config: Mapping[str, Any]) -> str:
    """Config files as JSON (valid YAML): no YAML library needed at run time."""
    return json.dumps(config, indent=2) + "\n"
