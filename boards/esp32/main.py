# nanotoll device on an ESP32: runs at power-up.
# Deploy with `nanotoll device flash` (docs/boards.md): the modules firmware/manifest.py
# lists for this board, the manifest and board.py to /lib, this file to /; config.json
# to / by `nanotoll device provision`.

import sys

if "/lib" not in sys.path:
    sys.path.append("/lib")

import board
import device

device.board_main(board, "/config.json")
