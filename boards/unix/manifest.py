# Frozen into nanotoll's unix-port build (tools/setup.sh, step mpy-unix): asyncio from
# MicroPython's tree, and the ssl names the firmware's TLS path needs (frozen/ssl.py).
include("$(MPY_DIR)/extmod/asyncio")
module("ssl.py", base_path="frozen")
