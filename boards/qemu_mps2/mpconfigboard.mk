# nanotoll's emulated board: MicroPython 1.25's qemu port on QEMU's mps2-an385
# (Cortex-M3), built out of tree:
#   make -C ports/qemu BOARD=NANOTOLL_MPS2 BOARD_DIR=/abs/path/boards/qemu_mps2
# (`make setup` does this; see tools/setup.sh, step mpy-board). On top of the stock
# MPS2_AN385 board: littlefs2 on a RAM block device mounted at boot, a `time` module
# ticking from the CMSDK dual timer, `select`, asyncio frozen in, machine.UART on the
# second CMSDK UART (the broker link), os.urandom and wall-clock time from the host
# through semihosting, Ctrl-C, and boot.py/main.py at boot like a real board.

QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'
# Our config file wraps the port's mpconfigport.h (py/mpconfig.h reads MP_CONFIGFILE).
CFLAGS += -I$(BOARD_DIR) -DMP_CONFIGFILE='"mpconfigboard.h"'

# The port's script plus a place for .ARM.exidx (see mps2.ld).
LDSCRIPT = $(BOARD_DIR)/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o
SRC_C += $(BOARD_DIR)/board_init.c $(BOARD_DIR)/modmps2.c shared/timeutils/timeutils.c

# The port's mphalport.c reads stdin by polling UART0; ours reads the interrupt-fed
# buffer instead (and sleeps with WFI), so the calls are redirected at link time.
LDFLAGS += -Wl,--wrap=mp_hal_stdin_rx_chr -Wl,--wrap=mp_hal_stdio_poll

MICROPY_VFS_LFS2 = 1

FROZEN_MANIFEST ?= $(BOARD_DIR)/manifest.py

MPY_CROSS_FLAGS += -march=armv7m
