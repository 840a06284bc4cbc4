# What the nanotoll device firmware is made of, in the manner of micropython-lib's
# manifest.py files: the modules in import order, leaves first, and the boards that
# take each (all of them unless `boards` says otherwise).
#
# Read by nanotoll.device.manifest (flash, the benches, the firmware tests) and, at
# boot, by device.py, which imports the boot=True modules in this order without
# compiling this file: keep one module() call a line, with the name in double quotes.

metadata(description="nanotoll payment agent: signed vouchers over MQTT", version="0.1.0")

module("errors.py", boot=True)
# keccak imports its viper permutation where the port has the native emitter.
module("_keccak_viper.py")
module("keccak.py", boot=True)
# secp256k1's field arithmetic: viper where the port has the native emitter, else the
# plain one; every board we flash has it, so only the unix port carries the fallback.
module("_field_viper.py")
module("_field_plain.py", boards=("unix",))
# The field's Thumb-2 fast path (UMLAL): boards with an ARMv7-M or later core only.
module("_field_thumb2.py", boards=("qemu_mps2",))
# Comb table building and public-key recovery, which secp256k1 imports for each use
# and drops afterwards (not at boot).
module("_secp256k1_build.py", on_demand=True)
module("_secp256k1_recover.py", on_demand=True)
module("secp256k1.py", boot=True)
module("eip712.py", boot=True)
module("cbor.py", boot=True)
module("voucher.py", boot=True)
module("wallet.py", boot=True)
module("mqtt.py", boot=True)
# The TCP/TLS link to the broker: the boards with a network stack (board.py imports it).
module("tcp_link.py", boards=("unix", "esp32", "rp2040_picow"))
module("store.py", boot=True)
module("policy.py", boot=True)
# The owner-signed policy: imported when the config names the owner (not at boot).
module("owner_policy.py")
# The purchase log: imported when the config asks for one.
module("purchase_log.py")
module("agent.py", boot=True)
# Boot (board_main, make_agent) and the command line the unix and emulated boards run.
module("device.py")
module("console.py")
# Wi-Fi, clock and file system of the boards with a radio; their board.py imports it.
module("wifi_board.py", boards=("esp32", "rp2040_picow"))
