# Frozen into the nanotoll emulated board: asyncio (as on real boards) and the
# boot script that mounts the file system.
include("$(MPY_DIR)/extmod/asyncio")
freeze("$(BOARD_DIR)/frozen", "_boot.py")
