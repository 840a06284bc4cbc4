// nanotoll emulated board: the qemu port's configuration plus what a real board has.
// py/mpconfig.h includes this file instead of mpconfigport.h (MP_CONFIGFILE).

#include "mpconfigport.h"

#undef MICROPY_PY_SELECT
#undef MICROPY_PY_TIME
#undef MICROPY_PY_ASYNCIO

// asyncio needs select.poll and time's ticks.
#define MICROPY_PY_SELECT (1)
#define MICROPY_PY_ASYNCIO (1)

// time: ticks from the CMSDK dual timer (1 ms interrupt), wall clock from the host.
#define MICROPY_PY_TIME (1)
#define MICROPY_PY_TIME_GMTIME_LOCALTIME_MKTIME (1)
#define MICROPY_PY_TIME_TIME_TIME_NS (1)
#define MICROPY_PY_TIME_INCLUDEFILE "board_time.inc"
#define MICROPY_EPOCH_IS_1970 (1)

// os.urandom from the host's /dev/urandom (semihosting), the board's "TRNG".
#define MICROPY_PY_OS_URANDOM (1)
#define MICROPY_PY_OS_INCLUDEFILE "board_os.inc"
#define MICROPY_PY_RANDOM_SEED_INIT_FUNC (board_random_seed())

// machine.UART(1): the second CMSDK UART, interrupt-fed receive buffer.
#define MICROPY_PY_MACHINE_UART (1)
#define MICROPY_PY_MACHINE_UART_INCLUDEFILE "board_uart.inc"
#define MICROPY_PY_MACHINE_UART_CLASS_CONSTANTS

// ROMFS: vfs.rom_ioctl over the board's ROMFS partition (board.h), so .mpy files
// there run in place (bytecode and constants stay out of the heap) and
// `mpremote romfs query|deploy` work as on rp2 and ESP32.
#undef MICROPY_VFS_ROM_IOCTL
#define MICROPY_VFS_ROM_IOCTL (1)

#define MICROPY_KBD_EXCEPTION (1)
#define MICROPY_ENABLE_SCHEDULER (1)

// Hardware set-up (once), then _boot.py, boot.py and (in the friendly REPL) main.py.
#define MICROPY_PORT_INIT_FUNC board_init()

// Sleep until the next interrupt (at most the 1 ms tick) instead of spinning.
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS) __asm volatile ("wfi")

#ifndef __ASSEMBLER__
#include <stddef.h>
void board_init(void);
unsigned int board_random_seed(void);
#endif
