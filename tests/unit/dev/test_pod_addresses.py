"""Local pod addresses: each test session takes a 127.B.0.0/16 block of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rankswap_dev.localkube import pods

pytestmark = pytest.mark.timeout(60)

_CLAIM = (
    "import sys, time; from pathlib import Path; "
    "from rankswap_dev.localkube.pods import claim_address_block; "
    "print(claim_address_block(Path(sys.argv[1])), flush=True); time.sleep(30)"
)


def test_two_processes_claim_different_blocks_and_a_dead_ones_block_is_free_again(
    tmp_path: Path,
) -> None:
    first = subprocess.Popen(
        [sys.executable, "-c", _CLAIM, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    second = subprocess.Popen(
        [sys.executable, "-c", _CLAIM, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout is not None and second.stdout is not None
        first_block = int(first.stdout.readline())
        second_block = int(second.stdout.readline())
        assert {first_block, second_block} == {1, 2}
        first.kill()
        first.wait(10)
        freed = subprocess.run(
            [sys.executable, "-c", _CLAIM.replace("time.sleep(30)", "pass"), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert int(freed.stdout) == first_block
    finally:
        for process in (first, second):
            process.kill()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


def test_pod_addresses_of_one_process_are_distinct_loopback_addresses_outside_block_zero() -> None:
    addresses = [pods.next_pod_ip() for _ in range(300)]
    assert len(set(addresses)) == 300
    for address in addresses:
        octets = [int(part) for part in address.split(".")]
        assert octets[0] == 127 and octets[1] != 0 and 2 <= octets[3] <= 251
