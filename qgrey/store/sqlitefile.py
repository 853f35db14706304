"""Look one key up in qgrey's SQLite file without loading SQLite.

Loading the SQLite library costs about half a Python start-up; a known
sender needs only one read. This reads the documented file format
(https://www.sqlite.org/fileformat2.html) for the one shape qgrey writes: a
rollback-journal database, UTF-8, and a WITHOUT ROWID table whose first
column is the TEXT key.

It takes SQLite's own SHARED lock, as SQLite's unix VFS does (POSIX
advisory locks on the lock bytes at 1 GiB; https://www.sqlite.org/lockingv3.html),
so no writer, qgrey's or any other process's, can be writing pages into
the file while it reads, and it reads while a qgrey writer prepares its
transaction (RESERVED), as SQLite readers do. A journal beside the file
with no writer holding RESERVED is hot (a writer died mid-commit): only
SQLite may read, and roll it back, then. Anything else it does not know
(WAL mode, overflow pages, an odd page) raises Unsupported, and the caller
asks SQLite itself.
"""
import posix
import time

# The lock bytes of SQLite's unix VFS (os_unix.c): PENDING, RESERVED, SHARED range.
PENDING_BYTE = 0x40000000
RESERVED_BYTE = PENDING_BYTE + 1
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510
# While a writer commits (PENDING, then EXCLUSIVE), a reader waits this
# long between attempts, as SQLite's busy handler does.
BUSY_PAUSE = 0.001


class Unsupported(Exception):
    pass


class Busy(Exception):
    """SQLite's SHARED lock was not obtained by the deadline."""


def _shared_lock(fd, deadline):
    """SQLite's SHARED lock on fd (released when fd is closed)."""
    import fcntl
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, PENDING_BYTE)
            try:
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, SHARED_SIZE, SHARED_FIRST)
                return
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, PENDING_BYTE)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: a writer commits
            pass
        if time.monotonic() >= deadline:
            raise Busy()
        time.sleep(BUSY_PAUSE)


def _reserved(fd):
    """Whether another process holds SQLite's RESERVED lock (a writer is in
    a transaction), asked without taking any lock (F_GETLK)."""
    import fcntl
    import _struct
    if posix.uname().sysname != "Linux":
        return False  # struct flock differs elsewhere: treat the journal as hot
    query = _struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, RESERVED_BYTE, 1, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    return _struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK


def _varint(buf, pos):
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = value << 7 | byte & 0x7F
        if byte < 0x80:
            return value, pos + i + 1
    return value << 8 | buf[pos + 8], pos + 9


def _record(payload):
    """Record format -> list of values (int, bytes or None)."""
    header_size, pos = _varint(payload, 0)
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    values, pos = [], header_size
    for serial in types:
        if serial == 0:
            values.append(None)
        elif serial <= 6:
            size = (0, 1, 2, 3, 4, 6, 8)[serial]
            values.append(int.from_bytes(payload[pos:pos + size], "big", signed=True))
            pos += size
        elif serial in (8, 9):
            values.append(serial - 8)
        elif serial >= 12:
            size = (serial - 12) >> 1
            values.append(bytes(payload[pos:pos + size]))
            pos += size
        else:
            raise Unsupported("serial type %d" % serial)
    return values


def _text_key(payload):
    """The first column of a record, which must be text, without the rest."""
    header_size, pos = _varint(payload, 0)
    serial, _ = _varint(payload, pos)
    if serial < 13 or not serial & 1:
        raise Unsupported("key is not text")
    return payload[header_size:header_size + ((serial - 13) >> 1)]


class _Cells:
    """The cell pointers of a page, decoded only when a search asks."""
    __slots__ = ("data", "base", "count")

    def __init__(self, data, base, count):
        self.data, self.base, self.count = data, base, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        pos = self.base + 2 * index
        return self.data[pos] << 8 | self.data[pos + 1]


class Reader:
    def __init__(self, path, deadline):
        self.fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
        try:
            _shared_lock(self.fd, deadline)
            for suffix, hot in (("-journal", lambda: not _reserved(self.fd)), ("-wal", bool)):
                try:
                    if posix.stat(path + suffix).st_size and hot():
                        raise Unsupported("journal present")
                except FileNotFoundError:
                    pass
            header = posix.pread(self.fd, 100, 0)
            if len(header) < 100 or header[:16] != b"SQLite format 3\0":
                raise Unsupported("not a database")
            size = int.from_bytes(header[16:18], "big")
            self.page_size = 65536 if size == 1 else size
            if header[18:20] != b"\1\1" or header[56:60] != b"\0\0\0\1":
                raise Unsupported("WAL mode or not UTF-8")
            self.usable = self.page_size - header[20]
            self.pages = int.from_bytes(header[28:32], "big")
            self.cache = {}
        except BaseException:
            posix.close(self.fd)
            raise

    def close(self):
        posix.close(self.fd)

    def _page(self, number):
        # The root and upper pages are shared by the keys of one request.
        page = self.cache.get(number)
        if page is None:
            page = self.cache[number] = self._read_page(number)
        return page

    def _read_page(self, number):
        if not 1 <= number <= self.pages:
            raise Unsupported("page %d out of range" % number)
        data = posix.pread(self.fd, self.page_size, (number - 1) * self.page_size)
        if len(data) != self.page_size:
            raise Unsupported("short page")
        start = 100 if number == 1 else 0
        kind = data[start]
        count = int.from_bytes(data[start + 3:start + 5], "big")
        interior = kind in (2, 5)
        pointers = start + (12 if interior else 8)
        cells = _Cells(data, pointers, count)
        right = int.from_bytes(data[start + 8:start + 12], "big") if interior else 0
        return kind, data, cells, right

    def _payload(self, data, pos, table_leaf):
        size, pos = _varint(data, pos)
        if table_leaf:
            _, pos = _varint(data, pos)  # rowid
            limit = self.usable - 35
        else:
            limit = (self.usable - 12) * 64 // 255 - 23
        if size > limit:
            raise Unsupported("overflow page")
        return data[pos:pos + size]

    def root_page(self, table):
        kind, data, cells, _ = self._page(1)
        if kind != 0x0D:
            raise Unsupported("large schema")
        for cell in cells:
            row = _record(self._payload(data, cell, True))
            if row[0] == b"table" and row[1] == table:
                return row[3]
        return None

    def find(self, root, key):
        """The record whose first column is key, or None."""
        number = root
        for _ in range(32):
            kind, data, cells, right = self._page(number)
            if kind not in (0x02, 0x0A):
                raise Unsupported("page type %d" % kind)
            interior = kind == 0x02
            low, high = 0, len(cells)
            while low < high:
                middle = (low + high) // 2
                payload = self._payload(data, cells[middle] + (4 if interior else 0), False)
                found = _text_key(payload)
                if found == key:
                    return _record(payload)
                if found < key:
                    low = middle + 1
                else:
                    high = middle
            if not interior:
                return None
            if low == len(cells):
                number = right
            else:
                number = int.from_bytes(data[cells[low]:cells[low] + 4], "big")
        raise Unsupported("tree too deep")


def lookup(path, table, key, deadline=None):
    """-> the row (list) of key in table, or None. Raises Unsupported, Busy, OSError."""
    return lookup_many(path, table, [key], deadline)[0]


def lookup_many(path, table, keys, deadline=None):
    """-> the row (or None) of each key (None: not wanted) in one reading;
    SQLite's SHARED lock is waited for until deadline (monotonic)."""
    reader = Reader(path, time.monotonic() + 3 if deadline is None else deadline)
    try:
        root = reader.root_page(table)
        return [None if root is None or key is None else reader.find(root, key) for key in keys]
    except (IndexError, ValueError) as err:
        raise Unsupported("malformed: %s" % err)
    finally:
        reader.close()
