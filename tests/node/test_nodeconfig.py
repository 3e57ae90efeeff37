"""Pure parts of the real node (rankswap_dev.localkube._nodeconfig): address blocks that stay local,
configuration files, the unmount order. No node needed; runs in `make test`."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from rankswap_dev.localkube._nodeconfig import (
    NodeConfigError,
    NodeNetwork,
    choose_network,
    cni_conflist,
    containerd_config,
    corefile,
    kube_proxy_config,
    kubelet_config,
    mounts_below,
)


def test_first_free_block_skips_used_networks_and_taken_netns_names() -> None:
    assert choose_network([], []).index == 0
    # a route into the pod block of cluster 0, an address in the link block of cluster 1
    net = choose_network(["10.214.0.128/25", "10.213.1.2/32", "default", "fe80::/64"], [])
    assert net.index == 2
    assert choose_network([], ["rankswap-node-0"]).index == 1


def test_no_free_block_is_a_clear_error() -> None:
    with pytest.raises(NodeConfigError, match="no free block"):
        choose_network(["10.0.0.0/8"], [])


def test_blocks_are_private_and_disjoint() -> None:
    net = NodeNetwork(7)
    blocks = net.networks()
    assert all(b.is_private for b in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    assert ipaddress.ip_address(net.node_ip) in blocks[0]
    assert ipaddress.ip_address(net.host_ip) in blocks[0]
    assert ipaddress.ip_address(net.service_ip) in blocks[2]
    assert len(net.host_link) <= 15 and len(net.node_link) <= 15


def test_containerd_config_is_valid_toml_with_the_fixes_this_machine_needs(tmp_path: Path) -> None:
    config = tomllib.loads(containerd_config(tmp_path, runc="/usr/sbin/runc", cni_bin_dir="/cni"))
    assert config["version"] == 3
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False}
    assert config["grpc"]["address"] == str(tmp_path / "containerd.sock")
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "localhost/pause:3.10"


def test_pods_get_no_masquerade_to_other_networks(tmp_path: Path) -> None:
    bridge = cni_conflist(NodeNetwork(3), tmp_path)["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.214.3.0/24"}]]
    assert str(tmp_path) in bridge["ipam"]["dataDir"]


def test_kubelet_and_proxy_configs(tmp_path: Path) -> None:
    net = NodeNetwork(4)
    kubelet = kubelet_config(net, tmp_path, cgroup_root="/rankswap-node-4", cluster_dns=True)
    assert kubelet["clusterDNS"] == [net.node_ip]
    assert "clusterDNS" not in kubelet_config(net, tmp_path, cgroup_root="/x", cluster_dns=False)
    assert kubelet["cgroupDriver"] == "cgroupfs" and kubelet["failCgroupV1"] is False
    assert kubelet["address"] == net.node_ip
    assert kubelet["cgroupRoot"] == "/rankswap-node-4"
    proxy = kube_proxy_config(net, tmp_path / "kubeconfig")
    assert proxy["clusterCIDR"] == net.pod_cidr and proxy["iptables"]["masqueradeAll"] is True
    assert proxy["conntrack"]["maxPerCore"] == 0


def test_corefile_serves_the_cluster_only_on_the_node_ip(tmp_path: Path) -> None:
    text = corefile(NodeNetwork(2), tmp_path / "kubeconfig")
    assert "bind 10.213.2.2" in text and "kubernetes cluster.local" in text
    assert "forward" not in text


def test_mounts_below_lists_only_the_work_dir_deepest_first() -> None:
    info = "\n".join(
        [
            "22 1 0:21 / /proc rw - proc proc rw",
            "90 22 0:50 / /tmp/rsnode-x/kubelet rw - tmpfs tmpfs rw",
            "91 90 0:51 / /tmp/rsnode-x/kubelet/pods/a/volumes/token rw - tmpfs tmpfs rw",
            "92 22 0:52 / /tmp/rsnode-xy/other rw - tmpfs tmpfs rw",
            "93 22 0:53 / /tmp/rsnode-x/with\\040space rw - tmpfs tmpfs rw",
        ]
    )
    assert mounts_below(info, [Path("/tmp/rsnode-x")]) == [
        "/tmp/rsnode-x/kubelet/pods/a/volumes/token",
        "/tmp/rsnode-x/kubelet",
        "/tmp/rsnode-x/with space",
    ]
