# nanotoll device on a Raspberry Pi Pico W: runs at power-up.
# Deploy (see boards/README.md): firmware/*.py and board.py to /lib, this file and
# config.json to /.

import sys

if "/lib" not in sys.path:
    sys.path.append("/lib")

import board
import device

device.board_main(board, "/config.json")
