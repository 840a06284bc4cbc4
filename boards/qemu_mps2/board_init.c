// nanotoll emulated board: the glue the stock qemu port lacks.
//
// - interrupts: a vector table in RAM (the port's has only the 16 system entries)
// - a 1 ms tick from the CMSDK dual timer (0x40002000, IRQ 10); timers 0 and 1 stay
//   free for benchmarks and for code that drives them through machine.mem32
// - UART0 (REPL) and UART1/2 receive through interrupts into buffers; a full buffer
//   masks its interrupt, so the byte waits in the UART and QEMU holds back the rest:
//   nothing is lost. Ctrl-C on UART0 raises KeyboardInterrupt in running code.
// - wall-clock time (SYS_TIME) and entropy (/dev/urandom) from the host, through
//   semihosting: the emulated stand-ins for a battery-backed RTC and a TRNG
// - boot: _boot.py (frozen: mounts littlefs), boot.py, and main.py in the friendly REPL

#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "shared/runtime/interrupt_char.h"
#include "shared/runtime/pyexec.h"

#include "board.h"

#define SCB_VTOR REG32(0xE000ED08)
#define NVIC_ISER0 REG32(0xE000E100)
#define NVIC_ISPR0 REG32(0xE000E200)

// CMSDK APB dual timer, timer 1 (SP804 registers).
#define DT_BASE 0x40002000
#define DT_LOAD REG32(DT_BASE + 0x00)
#define DT_VALUE REG32(DT_BASE + 0x04)
#define DT_CTRL REG32(DT_BASE + 0x08)
#define DT_INTCLR REG32(DT_BASE + 0x0C)
#define DT_RIS REG32(DT_BASE + 0x10)
#define DT_CTRL_32BIT (1u << 1)
#define DT_CTRL_INTEN (1u << 5)
#define DT_CTRL_PERIODIC (1u << 6)
#define DT_CTRL_ENABLE (1u << 7)
#define DT_HZ 25000000u // SYSCLK of the MPS2 FPGA images
#define DT_PER_MS (DT_HZ / 1000u)
#define DT_PER_US (DT_HZ / 1000000u)

#define IRQ_DUALTIMER 10
#define N_VECTORS 64 // 16 system + 48 external; VTOR wants 256-byte alignment

board_uart_t board_uart[3] = {
    {.base = 0x40004000, .irq = 0},
    {.base = 0x40005000, .irq = 2},
    {.base = 0x40006000, .irq = 4},
};

uint8_t board_bd[BOARD_BD_BLOCKS * BOARD_BD_BLOCK_SIZE];

static uint32_t vectors[N_VECTORS] __attribute__((aligned(256)));
static volatile uint64_t ticks_ms;
static uint32_t boot_epoch_s;
static int urandom_fd = -2; // -2: not opened yet, -1: no source
static bool hardware_ready;

static inline uint32_t irq_save(void) {
    uint32_t primask;
    __asm volatile ("mrs %0, primask\n cpsid i" : "=r" (primask) : : "memory");
    return primask;
}

static inline void irq_restore(uint32_t primask) {
    __asm volatile ("msr primask, %0" : : "r" (primask) : "memory");
}

// ----------------------------------------------------------------- semihosting --

static uint32_t semihosting_call(uint32_t num, const void *arg) {
    register uint32_t r0 __asm__ ("r0") = num;
    register const void *r1 __asm__ ("r1") = arg;
    __asm__ __volatile__ ("bkpt 0xAB" : "+r" (r0) : "r" (r1) : "memory");
    return r0;
}

#define SYS_OPEN 0x01
#define SYS_READ 0x06
#define SYS_TIME 0x11

int board_urandom(uint8_t *buf, size_t len) {
    if (urandom_fd == -2) {
        static const char path[] = "/dev/urandom";
        struct { const char *name; uint32_t mode; uint32_t len; } args = {path, 0, sizeof(path) - 1};
        urandom_fd = (int)semihosting_call(SYS_OPEN, &args);
        if (urandom_fd < 0) {
            urandom_fd = -1;
        }
    }
    if (urandom_fd < 0) {
        return -1;
    }
    while (len > 0) {
        struct { uint32_t fd; uint8_t *buf; uint32_t len; } args = {urandom_fd, buf, len};
        uint32_t left = semihosting_call(SYS_READ, &args); // bytes NOT read
        if (left >= len) {
            return -1;
        }
        buf += len - left;
        len = left;
    }
    return 0;
}

unsigned int board_random_seed(void) {
    uint32_t seed;
    if (board_urandom((uint8_t *)&seed, sizeof(seed)) != 0) {
        seed = mp_hal_ticks_us() ^ DT_VALUE;
    }
    return seed;
}

// ---------------------------------------------------------------------- ticks --

// No 64-bit division anywhere (libgcc's would drag unwind tables into the image):
// the interrupt keeps milliseconds and, separately, whole seconds.
static volatile uint32_t ticks_ms_in_s;
static volatile uint32_t ticks_s;

static void dualtimer_irq(void) {
    DT_INTCLR = 1;
    ticks_ms = ticks_ms + 1;
    if (ticks_ms_in_s == 999) {
        ticks_ms_in_s = 0;
        ticks_s = ticks_s + 1;
    } else {
        ticks_ms_in_s = ticks_ms_in_s + 1;
    }
}

// One consistent reading of the tick counters; *us_in_ms is 0..999.
static void board_ticks(uint32_t *ms, uint32_t *us_in_ms, uint32_t *s, uint32_t *ms_in_s) {
    uint32_t state = irq_save();
    uint32_t value = DT_VALUE;
    uint32_t m = (uint32_t)ticks_ms, mis = ticks_ms_in_s, sec = ticks_s;
    if (DT_RIS & 1) {
        // The period ended but its interrupt has not run yet: count it here.
        value = DT_VALUE;
        m += 1;
        if (++mis == 1000) {
            mis = 0;
            sec += 1;
        }
    }
    irq_restore(state);
    *ms = m;
    *us_in_ms = (DT_PER_MS - 1u - value) / DT_PER_US;
    if (s) {
        *s = sec;
        *ms_in_s = mis;
    }
}

uint64_t board_ticks_us64(void) {
    uint32_t ms, us, s, mis;
    board_ticks(&ms, &us, &s, &mis);
    return (uint64_t)s * 1000000u + mis * 1000u + us;
}

mp_uint_t mp_hal_ticks_ms(void) {
    uint32_t ms, us;
    board_ticks(&ms, &us, NULL, NULL);
    return ms;
}

mp_uint_t mp_hal_ticks_us(void) {
    uint32_t ms, us;
    board_ticks(&ms, &us, NULL, NULL);
    return ms * 1000u + us; // wraps at 2^32; time.ticks_us() masks to 2^30 anyway
}

mp_uint_t mp_hal_ticks_cpu(void) {
    uint32_t ms, us;
    board_ticks(&ms, &us, NULL, NULL);
    return ms * DT_PER_MS + us * DT_PER_US;
}

uint64_t mp_hal_time_ns(void) {
    uint32_t ms, us, s, mis;
    board_ticks(&ms, &us, &s, &mis);
    return ((uint64_t)boot_epoch_s + s) * 1000000000u + ((uint64_t)mis * 1000u + us) * 1000u;
}

uint32_t board_time_s(void) {
    uint32_t ms, us, s, mis;
    board_ticks(&ms, &us, &s, &mis);
    return boot_epoch_s + s;
}

void mp_hal_delay_us(mp_uint_t us) {
    uint32_t start = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - start < us) {
    }
}

void mp_hal_delay_ms(mp_uint_t ms) {
    uint32_t start = mp_hal_ticks_ms();
    while (mp_hal_ticks_ms() - start < ms) {
        mp_event_wait_ms(1); // scheduled callbacks, Ctrl-C; then WFI until the next tick
    }
}

// ---------------------------------------------------------------------- UARTs --

static void uart_rx_irq(board_uart_t *u) {
    REG32(u->base + UART_INTSTATUS) = UART_INT_RX;
    while (REG32(u->base + UART_STATE) & UART_STATE_RXFULL) {
        if (u->head - u->tail >= BOARD_RX_BUF) {
            // Full: leave the byte in the UART (QEMU then holds back the rest) and
            // mask the interrupt until the reader makes room.
            REG32(u->base + UART_CTRL) &= ~UART_CTRL_RX_INTEN;
            u->overflow_waits = u->overflow_waits + 1;
            return;
        }
        uint8_t c = (uint8_t)REG32(u->base + UART_DATA);
        if (u == &board_uart[0] && c == mp_interrupt_char) {
            mp_sched_keyboard_interrupt();
            continue;
        }
        u->buf[u->head % BOARD_RX_BUF] = c;
        u->head = u->head + 1;
    }
}

static void uart0_rx_irq(void) {
    uart_rx_irq(&board_uart[0]);
}

static void uart1_rx_irq(void) {
    uart_rx_irq(&board_uart[1]);
}

static void uart2_rx_irq(void) {
    uart_rx_irq(&board_uart[2]);
}

void board_uart_enable(board_uart_t *u) {
    if (u->enabled) {
        return;
    }
    u->head = u->tail = 0;
    REG32(u->base + UART_BAUDDIV) = 16;
    REG32(u->base + UART_CTRL) = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INTEN;
    NVIC_ISER0 = 1u << u->irq;
    u->enabled = true;
    if (REG32(u->base + UART_STATE) & UART_STATE_RXFULL) {
        NVIC_ISPR0 = 1u << u->irq; // a byte was already waiting
    }
}

int board_uart_getc(board_uart_t *u) {
    if (u->head == u->tail) {
        return -1;
    }
    uint8_t c = u->buf[u->tail % BOARD_RX_BUF];
    u->tail = u->tail + 1;
    uint32_t ctrl = REG32(u->base + UART_CTRL);
    if (!(ctrl & UART_CTRL_RX_INTEN)) {
        // There is room again: unmask, and run the handler for the waiting byte.
        REG32(u->base + UART_CTRL) = ctrl | UART_CTRL_RX_INTEN;
        NVIC_ISPR0 = 1u << u->irq;
    }
    return c;
}

size_t board_uart_any(board_uart_t *u) {
    return u->head - u->tail;
}

void board_uart_putc(board_uart_t *u, uint8_t c) {
    while (REG32(u->base + UART_STATE) & UART_STATE_TXFULL) {
    }
    REG32(u->base + UART_DATA) = c;
}

// The REPL's stdin (replaces the port's polling versions; see mpconfigboard.mk).
int __wrap_mp_hal_stdin_rx_chr(void) {
    for (;;) {
        int c = board_uart_getc(&board_uart[0]);
        if (c >= 0) {
            return c;
        }
        mp_event_wait_indefinite();
    }
}

uintptr_t __wrap_mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && board_uart_any(&board_uart[0])) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;
    }
    return ret;
}

// ----------------------------------------------------------------------- boot --

static void hardware_init(void) {
    // Vector table in RAM: the port's 16 system entries, then our interrupts.
    const uint32_t *old = (const uint32_t *)SCB_VTOR;
    for (int i = 0; i < 16; ++i) {
        vectors[i] = old[i];
    }
    for (int i = 16; i < N_VECTORS; ++i) {
        vectors[i] = old[2]; // NMI handler: an unexpected interrupt stops loudly
    }
    vectors[16 + board_uart[0].irq] = (uint32_t)uart0_rx_irq;
    vectors[16 + board_uart[1].irq] = (uint32_t)uart1_rx_irq;
    vectors[16 + board_uart[2].irq] = (uint32_t)uart2_rx_irq;
    vectors[16 + IRQ_DUALTIMER] = (uint32_t)dualtimer_irq;
    __asm volatile ("dsb");
    SCB_VTOR = (uint32_t)vectors;
    __asm volatile ("dsb\n isb");

    DT_CTRL = 0;
    DT_LOAD = DT_PER_MS - 1u;
    DT_INTCLR = 1;
    DT_CTRL = DT_CTRL_ENABLE | DT_CTRL_PERIODIC | DT_CTRL_INTEN | DT_CTRL_32BIT;
    NVIC_ISER0 = 1u << IRQ_DUALTIMER;

    // UART0 was set up by the port (TX and RX enabled): add its receive interrupt.
    board_uart_enable(&board_uart[0]);

    boot_epoch_s = semihosting_call(SYS_TIME, NULL);
    hardware_ready = true;
}

void board_init(void) {
    if (!hardware_ready) {
        hardware_init();
    }
    pyexec_frozen_module("_boot.py", false);
    pyexec_file_if_exists("boot.py");
    if (pyexec_mode_kind == PYEXEC_MODE_FRIENDLY_REPL) {
        pyexec_file_if_exists("main.py");
    }
}
