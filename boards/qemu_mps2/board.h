// nanotoll emulated board: what board_init.c shares with the modules.
#ifndef NANOTOLL_BOARD_H
#define NANOTOLL_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

// CMSDK APB UART registers (offsets) and bits.
#define UART_DATA 0x00
#define UART_STATE 0x04
#define UART_CTRL 0x08
#define UART_INTSTATUS 0x0C // write 1 to clear
#define UART_BAUDDIV 0x10
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TX_EN (1u << 0)
#define UART_CTRL_RX_EN (1u << 1)
#define UART_CTRL_RX_INTEN (1u << 3)
#define UART_INT_RX (1u << 1)

#define BOARD_RX_BUF 1024 // a power of two

typedef struct {
    uint32_t base;
    uint8_t irq;
    bool enabled;
    volatile uint32_t head; // written by the interrupt
    volatile uint32_t tail; // written by the reader
    volatile uint32_t overflow_waits; // times the buffer was full (receiver held back)
    uint8_t buf[BOARD_RX_BUF];
} board_uart_t;

extern board_uart_t board_uart[3]; // UART0 (REPL), UART1 (broker link), UART2

void board_uart_enable(board_uart_t *u);
int board_uart_getc(board_uart_t *u); // -1 when empty
size_t board_uart_any(board_uart_t *u);
void board_uart_putc(board_uart_t *u, uint8_t c);

uint64_t board_ticks_us64(void);
uint32_t board_time_s(void); // wall clock: the host's time at boot + ticks, s since 1970
int board_urandom(uint8_t *buf, size_t len); // 0, or -1 when there is no source

// The RAM block device ("flash") behind the littlefs file system.
#define BOARD_BD_BLOCK_SIZE 4096
#define BOARD_BD_BLOCKS 128
extern uint8_t board_bd[BOARD_BD_BLOCKS * BOARD_BD_BLOCK_SIZE];

// The board's ROMFS "flash partition": mps2-an385's PSRAM, outside the 4 MB RAM the
// firmware (and its static GC heap) lives in. QEMU fills it from a ROMFS image with
// `-device loader,file=romfs.img,addr=0x21000000,force-raw=on`; vfs.rom_ioctl also
// writes it (mpremote romfs deploy). _boot.py mounts a valid image at /rom.
#define BOARD_ROMFS_ADDR 0x21000000u
#define BOARD_ROMFS_BYTES (256u * 1024u)

#endif
