# nanotoll emulated board, run at every (soft) reset before boot.py and main.py:
# mount littlefs2 on the RAM block device at "/", making it on first boot. The RAM
# keeps its contents over soft resets; QEMU's exit is the power cut.
# Then the ROMFS partition (mps2.ROMFS_ADDR): a valid image is mounted at /rom, its
# .mpy files run in place, and /rom, /rom/lib come before /lib on sys.path. A blank
# partition is skipped quietly; anything else that is not a ROMFS is reported and the
# board boots on from the file system alone. (MicroPython's own ROMFS mount, at the end
# of mp_init, comes after boot.py and main.py and is silent; it finds /rom taken.)
import sys
import vfs
import mps2

bdev = mps2.RAMBlockDev()
try:
    vfs.mount(vfs.VfsLfs2(bdev), "/")
except OSError:
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), "/")
rom = vfs.rom_ioctl(2, 0)
if rom[0] not in (0, 0xFF) or rom[1] not in (0, 0xFF):
    try:
        vfs.mount(vfs.VfsRom(rom), "/rom")
        sys.path.append("/rom")
        sys.path.append("/rom/lib")
    except OSError as exc:
        print("romfs: no valid ROMFS image at 0x%08x (%r): booting without /rom"
              % (mps2.ROMFS_ADDR, exc))
sys.path.append("/lib")
del sys, vfs, mps2, bdev, rom
