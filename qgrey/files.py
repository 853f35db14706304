"""Files in directories that another user may write (GL_DIR belongs to the
plugin's user; root's tools work in it too).

Reading: opened without blocking (a FIFO there must not stall an SMTP
session), without following a link unless asked, checked to be a regular
file (and, if asked, to belong to one of the given owners), and read with a
bound. Writing: a new file under a random name, created exclusively without
following links, mode and owner set on the descriptor, then renamed into
place; the rename replaces a link itself, never what it points at.

Only posix (built in) is imported: the plugin reads its files through here.
"""
import posix

EINVAL, EPERM, EFBIG = 22, 1, 27
_READ = posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC | posix.O_NOCTTY


class Refused(OSError):
    """The file is there but is not one qgrey reads: not a regular file, an
    owner not trusted, or larger than the bound. strerror says which."""


def open_regular(path, follow=False, owners=None):
    """-> (fd, stat) of a regular file. Raises FileNotFoundError, Refused, or
    OSError. follow: a symbolic link is followed (its target checked);
    owners: the uids the file may belong to (None: any)."""
    if follow:  # a device or FIFO at the end of a link is refused unopened
        st = posix.stat(path)
        if st.st_mode & 0o170000 != 0o100000:
            raise Refused(EINVAL, "not a regular file", path)
    fd = posix.open(path, _READ if follow else _READ | posix.O_NOFOLLOW)
    try:
        st = posix.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise Refused(EINVAL, "not a regular file", path)
        if owners is not None and st.st_uid not in owners:
            raise Refused(EPERM, "owned by uid %d, not by root or the directory's owner"
                          % st.st_uid, path)
    except BaseException:
        posix.close(fd)
        raise
    return fd, st


def read_fd(fd, limit, path=None):
    """At most limit bytes from fd; Refused if there are more."""
    chunks, size = [], 0
    while True:
        chunk = posix.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Refused(EFBIG, "larger than %d bytes" % limit, path)


def read_regular(path, limit, follow=False, owners=None):
    """The contents of a regular file of at most limit bytes (see open_regular)."""
    fd, st = open_regular(path, follow, owners)
    try:
        if st.st_size > limit:
            raise Refused(EFBIG, "larger than %d bytes" % limit, path)
        return read_fd(fd, limit, path)
    finally:
        posix.close(fd)


def describe(err):
    """An OSError from here (or from open) as text for a log line."""
    return err.strerror or str(err)


def replace(path, data, mode=0o600, owner=None, sync=True):
    """Write data as the file path, atomically: a new file next to it
    (O_CREAT|O_EXCL|O_NOFOLLOW, random name), fchmod(mode), fchown(owner)
    when owner is (uid, gid), fsync, rename over path. A link at path is
    replaced, not followed. Raises OSError; nothing is left behind."""
    directory, _, name = path.rpartition("/")
    temporary = "%s/.%s.%s.tmp" % (directory or ".", name, posix.urandom(8).hex())
    fd = posix.open(temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL
                    | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view):]
            if owner is not None:
                posix.fchown(fd, owner[0], owner[1])
            posix.fchmod(fd, mode)
            if sync:
                posix.fsync(fd)
        finally:
            posix.close(fd)
        posix.rename(temporary, path)
    except BaseException:
        try:
            posix.unlink(temporary)
        except OSError:
            pass
        raise
