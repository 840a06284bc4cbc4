// nanotoll emulated board: module `mps2`.
//
//   mps2.RAMBlockDev()   the board's "flash": a block device over a fixed RAM area
//                        (littlefs2, mounted at "/" by the frozen _boot.py). The
//                        contents last over soft resets, not over QEMU's exit.
//   mps2.BOARD           "nanotoll-qemu-mps2" (tools tell this firmware from the stock one)
//   mps2.uart_stats(n)   (received-buffer bytes waiting, times the buffer was full)
//   mps2.ROMFS_ADDR, mps2.ROMFS_BYTES   the ROMFS partition (vfs.rom_ioctl, below)

#include <string.h>

#include "py/mperrno.h"
#include "py/objarray.h"
#include "py/runtime.h"
#include "extmod/vfs.h"

#include "board.h"

typedef struct {
    mp_obj_base_t base;
} mps2_bdev_obj_t;

static const mp_obj_type_t mps2_bdev_type;
static const mps2_bdev_obj_t mps2_bdev = {{&mps2_bdev_type}};

static mp_obj_t mps2_bdev_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 0, 0, false);
    return MP_OBJ_FROM_PTR(&mps2_bdev);
}

static void mps2_bdev_span(mp_obj_t block_in, mp_obj_t offset_in, size_t len, size_t *start) {
    mp_int_t block = mp_obj_get_int(block_in);
    mp_int_t offset = offset_in == mp_const_none ? 0 : mp_obj_get_int(offset_in);
    size_t total = sizeof(board_bd);
    if (block < 0 || offset < 0 || (size_t)block * BOARD_BD_BLOCK_SIZE + (size_t)offset + len > total) {
        mp_raise_OSError(MP_EIO);
    }
    *start = (size_t)block * BOARD_BD_BLOCK_SIZE + (size_t)offset;
}

static mp_obj_t mps2_bdev_readblocks(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(args[2], &buf, MP_BUFFER_WRITE);
    size_t start;
    mps2_bdev_span(args[1], n_args > 3 ? args[3] : mp_const_none, buf.len, &start);
    memcpy(buf.buf, board_bd + start, buf.len);
    return MP_OBJ_NEW_SMALL_INT(0);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mps2_bdev_readblocks_obj, 3, 4, mps2_bdev_readblocks);

static mp_obj_t mps2_bdev_writeblocks(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(args[2], &buf, MP_BUFFER_READ);
    size_t start;
    mps2_bdev_span(args[1], n_args > 3 ? args[3] : mp_const_none, buf.len, &start);
    memcpy(board_bd + start, buf.buf, buf.len);
    return MP_OBJ_NEW_SMALL_INT(0);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mps2_bdev_writeblocks_obj, 3, 4, mps2_bdev_writeblocks);

static mp_obj_t mps2_bdev_ioctl(mp_obj_t self_in, mp_obj_t op_in, mp_obj_t arg_in) {
    switch (mp_obj_get_int(op_in)) {
        case MP_BLOCKDEV_IOCTL_INIT:
        case MP_BLOCKDEV_IOCTL_DEINIT:
        case MP_BLOCKDEV_IOCTL_SYNC:
            return MP_OBJ_NEW_SMALL_INT(0);
        case MP_BLOCKDEV_IOCTL_BLOCK_COUNT:
            return MP_OBJ_NEW_SMALL_INT(BOARD_BD_BLOCKS);
        case MP_BLOCKDEV_IOCTL_BLOCK_SIZE:
            return MP_OBJ_NEW_SMALL_INT(BOARD_BD_BLOCK_SIZE);
        case MP_BLOCKDEV_IOCTL_BLOCK_ERASE: {
            mp_int_t block = mp_obj_get_int(arg_in);
            if (block < 0 || block >= BOARD_BD_BLOCKS) {
                return MP_OBJ_NEW_SMALL_INT(-MP_EIO);
            }
            memset(board_bd + (size_t)block * BOARD_BD_BLOCK_SIZE, 0xFF, BOARD_BD_BLOCK_SIZE);
            return MP_OBJ_NEW_SMALL_INT(0);
        }
        default:
            return mp_const_none;
    }
}
static MP_DEFINE_CONST_FUN_OBJ_3(mps2_bdev_ioctl_obj, mps2_bdev_ioctl);

static const mp_rom_map_elem_t mps2_bdev_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_readblocks), MP_ROM_PTR(&mps2_bdev_readblocks_obj) },
    { MP_ROM_QSTR(MP_QSTR_writeblocks), MP_ROM_PTR(&mps2_bdev_writeblocks_obj) },
    { MP_ROM_QSTR(MP_QSTR_ioctl), MP_ROM_PTR(&mps2_bdev_ioctl_obj) },
};
static MP_DEFINE_CONST_DICT(mps2_bdev_locals_dict, mps2_bdev_locals_dict_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    mps2_bdev_type,
    MP_QSTR_RAMBlockDev,
    MP_TYPE_FLAG_NONE,
    make_new, mps2_bdev_make_new,
    locals_dict, &mps2_bdev_locals_dict
    );

// vfs.rom_ioctl: one ROMFS segment, the PSRAM at BOARD_ROMFS_ADDR. It is RAM, so
// "erasing" fills with 0xFF (as flash reads when erased) and writing copies.
static MP_DEFINE_MEMORYVIEW_OBJ(board_romfs_obj, 'B', 0, BOARD_ROMFS_BYTES, (void *)BOARD_ROMFS_ADDR);

mp_obj_t mp_vfs_rom_ioctl(size_t n_args, const mp_obj_t *args) {
    mp_int_t cmd = mp_obj_get_int(args[0]);
    if (cmd == MP_VFS_ROM_IOCTL_GET_NUMBER_OF_SEGMENTS) {
        return MP_OBJ_NEW_SMALL_INT(1);
    }
    if (n_args < 2 || mp_obj_get_int(args[1]) != 0) {
        return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
    }
    uint8_t *base = (uint8_t *)BOARD_ROMFS_ADDR;
    switch (cmd) {
        case MP_VFS_ROM_IOCTL_GET_SEGMENT:
            return MP_OBJ_FROM_PTR(&board_romfs_obj);
        case MP_VFS_ROM_IOCTL_WRITE_PREPARE: {
            // rom_ioctl(3, 0, len): erase the first len bytes; returns the write granule.
            mp_int_t len = n_args > 2 ? mp_obj_get_int(args[2]) : -1;
            if (len < 0 || (size_t)len > BOARD_ROMFS_BYTES) {
                return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
            }
            memset(base, 0xFF, (size_t)len);
            return MP_OBJ_NEW_SMALL_INT(4);
        }
        case MP_VFS_ROM_IOCTL_WRITE: {
            // rom_ioctl(4, 0, offset, buf)
            if (n_args < 4) {
                return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
            }
            mp_int_t offset = mp_obj_get_int(args[2]);
            mp_buffer_info_t buf;
            mp_get_buffer_raise(args[3], &buf, MP_BUFFER_READ);
            if (offset < 0 || (size_t)offset + buf.len > BOARD_ROMFS_BYTES) {
                return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
            }
            memcpy(base + offset, buf.buf, buf.len);
            return MP_OBJ_NEW_SMALL_INT(0);
        }
        case MP_VFS_ROM_IOCTL_WRITE_COMPLETE:
            return MP_OBJ_NEW_SMALL_INT(0);
        default:
            return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
    }
}

static mp_obj_t mps2_uart_stats(mp_obj_t id_in) {
    mp_int_t id = mp_obj_get_int(id_in);
    if (id < 0 || id > 2) {
        mp_raise_ValueError(MP_ERROR_TEXT("UART id"));
    }
    board_uart_t *u = &board_uart[id];
    mp_obj_t items[2] = {
        mp_obj_new_int_from_uint(board_uart_any(u)),
        mp_obj_new_int_from_uint(u->overflow_waits),
    };
    return mp_obj_new_tuple(2, items);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mps2_uart_stats_obj, mps2_uart_stats);

static const mp_rom_map_elem_t mps2_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mps2) },
    { MP_ROM_QSTR(MP_QSTR_BOARD), MP_ROM_QSTR(MP_QSTR_nanotoll_hyphen_qemu_hyphen_mps2) },
    { MP_ROM_QSTR(MP_QSTR_RAMBlockDev), MP_ROM_PTR(&mps2_bdev_type) },
    { MP_ROM_QSTR(MP_QSTR_uart_stats), MP_ROM_PTR(&mps2_uart_stats_obj) },
    { MP_ROM_QSTR(MP_QSTR_ROMFS_ADDR), MP_ROM_INT(BOARD_ROMFS_ADDR) },
    { MP_ROM_QSTR(MP_QSTR_ROMFS_BYTES), MP_ROM_INT(BOARD_ROMFS_BYTES) },
};
static MP_DEFINE_CONST_DICT(mps2_module_globals, mps2_module_globals_table);

const mp_obj_module_t mps2_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mps2_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mps2, mps2_module);
