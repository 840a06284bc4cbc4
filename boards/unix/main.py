# nanotoll device on MicroPython's unix port.
#
#   micropython boards/unix/main.py --config CONFIG --init-key
#       make the device key (once) and print {"address": "0x...", "created": bool}
#   micropython boards/unix/main.py --config CONFIG --buy weather --count 20
#       [--params JSON] [--max-price N] [--interval-ms N]
#       one JSON line per purchase, then one summary line; exit 0 when all succeeded
#   micropython boards/unix/main.py --config CONFIG --status | --resync
#   micropython boards/unix/main.py --config CONFIG --app flight
#       run the example drone app (examples/drone/flight.py) on this agent
#
# Modules come from ../../firmware (added to sys.path here) and this folder; the
# command line itself is firmware/console.py.

import sys

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _here + "/../../firmware")
sys.path.insert(0, _here)

import board
import console

sys.exit(console.main(sys.argv, board, _here + "/../../examples/drone"))
