"""Device tooling: flash, provision and inspect boards over their MicroPython REPL
(mpremote's serial transport), and the emulated board (QEMU mps2-an385 with the
firmware built from ``boards/qemu_mps2``, its broker link bridged to mosquitto)."""
