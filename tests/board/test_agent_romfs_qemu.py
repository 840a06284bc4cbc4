"""The firmware deployed as ROMFS on the emulated board (boards/qemu_mps2 firmware).

The .mpy modules go into a ROMFS image in the board's ROMFS partition (PSRAM at
0x21000000: QEMU loads the image there at start, or ``mpremote romfs deploy`` writes
it through vfs.rom_ioctl); the board mounts it at /rom and runs them in place. Only
main.py and the config are on its littlefs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nanotoll.device.boards import BOARDS, MANIFEST_DEST
from nanotoll.device.qemu import ROMFS_ADDR, romfs_loader
from nanotoll.device.repl import DeviceError, Repl
from support.agent_helpers import CHAIN_ID, DEVICE_KEY, ESCROW, POLICY, PROVIDER_KEY, addr_hex
from support.secure_broker import secure_broker
from support.tools import require

ROMFS_HEADER = b"\xd2\xcd\x31"  # 0x80|'R', 0x80|'M', '1'
SPEC = BOARDS["qemu_mps2"]


def _need_board() -> None:
    require("qemu-board")


@pytest.fixture(scope="module")
def artifacts() -> Any:
    from nanotoll.device.flash import build
    require("mpy-cross")
    return build(SPEC, lambda message: None)


@pytest.fixture(scope="module")
def image(artifacts: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nanotoll.device.flash import build_romfs, split_romfs

    path = tmp_path_factory.mktemp("romfs") / "romfs.img"
    path.write_bytes(build_romfs(split_romfs(artifacts)[0]))
    return path


def _config() -> dict[str, Any]:
    return {
        "key": DEVICE_KEY.hex(), "chain_id": CHAIN_ID, "escrow": "0x" + ESCROW.hex(),
        "channel": 1, "provider": "0x" + addr_hex(PROVIDER_KEY), "policy": POLICY,
        "state_dir": "/state", "keepalive": 5, "timeout_ms": 20000, "resend_ms": 3000,
        "clock": int(time.time()),
    }


def _boot_output(repl: Repl) -> str:
    """Soft-reset the board from its raw REPL; what it printed while booting."""
    transport = repl._transport
    transport.serial.write(b"\x04")
    data = transport.read_until(1, b"raw REPL; CTRL-B to exit\r\n", timeout_overall=20)
    return str(data.decode(errors="replace"))


def test_image_and_deploy_command(artifacts: Any, image: Path) -> None:
    from nanotoll.device.flash import romfs_deploy_command, split_romfs

    modules, rest = split_romfs(artifacts)
    assert [a.dest for a in rest] == ["/main.py"]
    # the .mpy modules, and the manifest device.py reads its boot order from
    assert [a.dest for a in modules if not a.dest.endswith(".mpy")] == [MANIFEST_DEST]
    assert all(a.dest.startswith("/lib/") for a in modules)
    data = image.read_bytes()
    assert data.startswith(ROMFS_HEADER)
    for artifact in modules:  # each module's name and its .mpy bytes, unchanged
        assert artifact.dest[len("/lib/"):].encode() in data
        assert artifact.data in data
    assert romfs_deploy_command("/dev/ttyUSB0", image) == [
        sys.executable, "-m", "mpremote", "connect", "/dev/ttyUSB0", "romfs", "deploy",
        str(image)]
    assert romfs_loader(image) == [
        "-device", f"loader,file={image},addr=0x21000000,force-raw=on"]
    assert ROMFS_ADDR == 0x21000000


@pytest.fixture
def board_in_romfs(tmp_path: Path, image: Path, artifacts: Any
                   ) -> Iterator[tuple[Any, Repl, dict[str, str]]]:
    """The board on the secure broker: its bridge makes the TLS connection (a modem's
    TLS offload) and the board logs in with its own client; the provider with TLS."""
    from nanotoll.bench.provider import ReferenceProvider
    from nanotoll.device.flash import flash, split_romfs
    from nanotoll.device.sim import BoardSim

    _need_board()
    with secure_broker(tmp_path / "broker") as (broker, login), \
            ReferenceProvider.on_secure_broker(broker, deposit=POLICY["deposit"]) as gateway, \
            BoardSim(broker.host, broker.port, romfs=image, ca_file=broker.ca_file) as sim, \
            Repl(sim.pty) as repl:
        flash(repl, SPEC, split_romfs(artifacts)[1], lambda message: None, reset=False)
        yield gateway, repl, {"username": login.username, "password": login.password}


def test_comb_table_for_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's g.tbl is the firmware's own table for G; a host that cannot make it
    (no unix port) says so and flashes the image without it."""
    from nanotoll.device.flash import comb_table_artifact

    require("micropython")
    table = comb_table_artifact(lambda line: None)
    assert table is not None and table.dest == "/lib/g.tbl" and len(table.data) == 65392
    assert table.data.startswith(b"nt-comb 8.4.8 v1")
    said: list[str] = []
    monkeypatch.setenv("NANOTOLL_MICROPYTHON", "/nonexistent/micropython")
    assert comb_table_artifact(said.append) is None
    assert "builds it in its comb_tables folder" in said[0], said


def test_purchases_with_the_firmware_in_romfs(
        board_in_romfs: tuple[Any, Repl, dict[str, str]]) -> None:
    import json

    from nanotoll.device.provision import CONFIG_FILE, buy

    gateway, repl, login = board_in_romfs
    repl.write_file(CONFIG_FILE, json.dumps({**_config(), "broker": login}).encode())
    where = repl.exec_json("import os, json, sys, agent, board\n"
                           "print(json.dumps([sys.path, agent.__file__, board.__file__, "
                           "os.listdir('/lib')]))")
    assert where[0].index("/rom") < where[0].index("/lib")
    assert where[1:] == ["/rom/agent.mpy", "/rom/board.mpy", [".nanotoll-files"]]
    lines = buy(repl, "weather", 2)
    assert [x["ok"] for x in lines] == [True, True], lines
    assert lines[-1]["cumulative"] == lines[-1]["receipt_cumulative"] > 0
    assert gateway.book.accepted == 2


def test_corrupt_image_is_reported_and_the_board_boots(tmp_path: Path, image: Path) -> None:
    from nanotoll.device.sim import BoardSim

    _need_board()
    bad = bytearray(image.read_bytes())
    bad[:4] = b"\xd2junk"[:4]  # right first byte, wrong rest of the header
    (tmp_path / "bad.img").write_bytes(bytes(bad))
    with secure_broker(tmp_path / "broker") as (broker, _), \
            BoardSim(broker.host, broker.port, romfs=tmp_path / "bad.img",
                     ca_file=broker.ca_file) as sim, \
            Repl(sim.pty) as repl:
        said = _boot_output(repl)
        assert "romfs: no valid ROMFS image at 0x21000000" in said, said
        assert "booting without /rom" in said
        state = repl.exec_json("import os, sys, json\n"
                               "print(json.dumps(['rom' in os.listdir('/'), sys.path]))")
        assert state == [False, ["", ".frozen", "/lib"]]
        # the file system works as without a ROMFS: files go there and import from there
        repl.write_file("/hello.py", b"X = 42\n")
        assert repl.exec("import hello\nprint(hello.X)").strip() == "42"


def test_flash_romfs_deploys_with_mpremote(tmp_path: Path, artifacts: Any) -> None:
    """`nanotoll device flash --romfs` on the emulated board: mpremote romfs deploy
    writes the partition through vfs.rom_ioctl, G's comb table beside the modules;
    /lib keeps no modules."""
    from nanotoll.device.flash import flash, flash_romfs
    from nanotoll.device.sim import BoardSim

    _need_board()
    said: list[str] = []
    with secure_broker(tmp_path / "broker") as (broker, _), \
            BoardSim(broker.host, broker.port, ca_file=broker.ca_file) as sim:
        with Repl(sim.pty) as repl:  # first as files on littlefs
            flash(repl, SPEC, artifacts, said.append, reset=False)
            assert "romfs" not in repl.exec("import os\nprint(os.listdir('/'))")
        flash_romfs(sim.pty, SPEC, artifacts, said.append, reset=False)
        assert any("romfs deploy" in line for line in said), said
        with Repl(sim.pty) as repl:
            where = repl.exec_json("import os, json, agent, secp256k1\n"
                                   "print(json.dumps([agent.__file__, os.listdir('/lib'),\n"
                                   "    secp256k1.use_table('/rom/g.tbl', rebuild=False)]))")
        # G's comb table went into the image, and the board signs with it in place
        assert where == ["/rom/agent.mpy", [".nanotoll-files"], "ok"]
        said.clear()
        flash_romfs(sim.pty, SPEC, artifacts, said.append, reset=False)
        assert any("already holds this image" in line for line in said), said
        assert not any("romfs deploy" in line for line in said), said
        # Back to plain files while /rom still holds the modules: refused, nothing written.
        with Repl(sim.pty) as repl, pytest.raises(DeviceError, match="ROMFS holds"):
            flash(repl, SPEC, artifacts, said.append, reset=False)
