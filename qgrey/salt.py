"""The salt of GL_PRIVACY=1: GL_DIR/salt, 32 random bytes, created on
first use with mode 0600. Losing or changing it forgets every entry.
Read without blocking or following a link: it must be a regular file of
16 to LIMIT bytes."""
import posix

from qgrey import files

NAME = "salt"
SIZE = 32
LIMIT = 4096


def load(directory):
    """-> the salt, created if missing. Raises OSError."""
    path = directory + "/" + NAME
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    temporary = "%s.%d" % (path, posix.getpid())
    fd = posix.open(temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL
                    | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600)
    try:
        try:
            posix.write(fd, posix.urandom(SIZE))
            posix.fsync(fd)
        finally:
            posix.close(fd)
        try:
            posix.link(temporary, path)  # whoever links first wins
        except FileExistsError:
            pass
    finally:
        posix.unlink(temporary)
    return _read(path)


def _read(path):
    value = files.read_regular(path, LIMIT)
    if len(value) < 16:
        raise OSError(0, "%s is shorter than 16 bytes" % path)
    return value
