# nanotoll device on the emulated mps2-an385 board.
#
# The host gives the board the firmware modules, this folder's modules and a config
# (e.g. with `mpremote mount` of a folder holding firmware/, boards/qemu_mps2/,
# examples/ and config.json), then runs this file. The config is the unix one plus
# "clock" (unix seconds, from the host), since the board has no clock of its own.
#
# With a global ARGS (a list, as on the unix command line, e.g. set by the host
# before it runs this file) it runs firmware/console.py; otherwise it starts the
# agent as a board does at power-up.

import sys

for _path in ("boards/qemu_mps2", "firmware"):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import board

try:
    _args = ARGS  # noqa: F821 - set by the host
except NameError:
    _args = None

if _args is None:
    import device

    device.board_main(board, "config.json")
else:
    import console

    _rc = console.main(["main.py"] + _args, board, "examples/drone")
    print("exit", _rc)
