# nanotoll emulated board, run at every (soft) reset before boot.py and main.py:
# mount littlefs2 on the RAM block device at "/", making it on first boot. The RAM
# keeps its contents over soft resets; QEMU's exit is the power cut.
import sys
import vfs
import mps2

bdev = mps2.RAMBlockDev()
try:
    vfs.mount(vfs.VfsLfs2(bdev), "/")
except OSError:
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), "/")
sys.path.append("/lib")
del sys, vfs, mps2, bdev
