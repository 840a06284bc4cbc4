# nanotoll device on the emulated board, run at power-up (and at a soft reset from the
# REPL prompt). Once provisioned (/config.json), start the agent and keep it online;
# before that, say what to do. Ctrl-C (or any mpremote command) stops it.
import os

try:
    os.stat("/config.json")
except OSError:
    print("nanotoll: not provisioned yet: run `nanotoll device provision`")
else:
    import board
    import device

    device.board_main(board, "/config.json")
