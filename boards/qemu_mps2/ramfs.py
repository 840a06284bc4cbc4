# nanotoll board layer, qemu_mps2: a small writable RAM file system for the state
# record (this port has no flash file system). rename replaces atomically, as on
# littlefs. Contents last until QEMU stops: enough for an emulated board.

import io
import vfs


class _File:
    """A file open for writing; its bytes become the file's content on flush/close."""

    def __init__(self, fs, name):
        self._fs = fs
        self._name = name
        self._buf = bytearray()

    def write(self, data):
        self._buf += data
        return len(data)

    def flush(self):
        self._fs.files[self._name] = bytes(self._buf)

    def close(self):
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RamFS:
    def __init__(self):
        self.files = {}
        self.dirs = set()

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def _name(self, path):
        return path.strip("/")

    def open(self, path, mode):
        name = self._name(path)
        if "w" in mode:
            return _File(self, name)
        if name not in self.files:
            raise OSError(2)
        # reads return native streams: `import` needs the stream protocol
        data = self.files[name]
        if "b" in mode:
            return io.BytesIO(data)
        return io.StringIO(data.decode())

    def stat(self, path):
        name = self._name(path)
        if not name or name in self.dirs:
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if name in self.files:
            return (0x8000, 0, 0, 0, 0, 0, len(self.files[name]), 0, 0, 0)
        raise OSError(2)

    def ilistdir(self, path):
        prefix = self._name(path)
        prefix = prefix + "/" if prefix else ""
        for name in self.files:
            if name.startswith(prefix) and "/" not in name[len(prefix) :]:
                yield (name[len(prefix) :], 0x8000, 0, len(self.files[name]))

    def mkdir(self, path):
        name = self._name(path)
        if name in self.dirs:
            raise OSError(17)
        self.dirs.add(name)

    def remove(self, path):
        name = self._name(path)
        if name not in self.files:
            raise OSError(2)
        del self.files[name]

    def rename(self, old, new):
        old = self._name(old)
        if old not in self.files:
            raise OSError(2)
        self.files[self._name(new)] = self.files.pop(old)

    def chdir(self, path):
        pass

    def getcwd(self):
        return "/"

    def statvfs(self, path):
        return (512, 512, 64, 64, 64, 0, 0, 0, 0, 255)


def mount(point="/ram"):
    fs = RamFS()
    vfs.mount(fs, point)
    return fs
