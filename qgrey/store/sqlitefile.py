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


# The one table the reader reads, exactly as qgrey creates it; SQLite keeps
# the statement in its schema without "IF NOT EXISTS".
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries ("
    "key TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL, "
    "passed INTEGER NOT NULL, tries INTEGER NOT NULL) WITHOUT ROWID"
)
STORED_SCHEMA = {b"entries": SCHEMA.replace("IF NOT EXISTS ", "").encode()}
# A key or record larger than this is not qgrey's (keys are capped far lower).
MAX_PAYLOAD = 1 << 20


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
    if header_size > len(payload):
        raise Unsupported("record header beyond the payload")
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    values, pos = [], header_size
    for serial in types:
        if serial == 0:
            values.append(None)
            continue
        if serial in (8, 9):
            values.append(serial - 8)
            continue
        if serial <= 6:
            size = (0, 1, 2, 3, 4, 6, 8)[serial]
        elif serial >= 12:
            size = (serial - 12) >> 1
        else:  # 7: a float; 10, 11: reserved
            raise Unsupported("serial type %d" % serial)
        if pos + size > len(payload):
            raise Unsupported("record value beyond the payload")
        value = payload[pos:pos + size]
        values.append(int.from_bytes(value, "big", signed=True) if serial <= 6 else bytes(value))
        pos += size
    return values


def _text_key(payload):
    """The first column of a record, which must be text, without the rest."""
    header_size, pos = _varint(payload, 0)
    serial, _ = _varint(payload, pos)
    size = (serial - 13) >> 1
    if serial < 13 or not serial & 1 or header_size + size > len(payload):
        raise Unsupported("key is not text")
    return payload[header_size:header_size + size]


class _Cells:
    """The cell pointers of a page, decoded only when a search asks."""
    __slots__ = ("data", "base", "count", "low", "high")

    def __init__(self, data, base, count, high):
        self.data, self.base, self.count = data, base, count
        self.low, self.high = base + 2 * count, high

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        pos = self.base + 2 * index
        cell = self.data[pos] << 8 | self.data[pos + 1]
        if not self.low <= cell < self.high:
            raise Unsupported("cell pointer out of the page")
        return cell


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
            if self.page_size < 512 or self.page_size & (self.page_size - 1):
                raise Unsupported("bad page size")
            if header[18:20] != b"\1\1" or header[56:60] != b"\0\0\0\1":
                raise Unsupported("WAL mode or not UTF-8")
            if header[21:24] != b"\x40\x20\x20" or not 1 <= header[47] <= 4 or header[44:47] != b"\0\0\0":
                raise Unsupported("unknown format")
            self.usable = self.page_size - header[20]
            if self.usable < 480:
                raise Unsupported("too little usable space")
            # SQLite trusts the page count in the header only while it is
            # valid for this version of the file; the reader wants both.
            self.pages = int.from_bytes(header[28:32], "big")
            if header[92:96] != header[24:28] or self.pages * self.page_size != posix.fstat(self.fd).st_size:
                raise Unsupported("page count not valid")
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

    def _read(self, number):
        if not 1 <= number <= self.pages:
            raise Unsupported("page %d out of range" % number)
        data = posix.pread(self.fd, self.page_size, (number - 1) * self.page_size)
        if len(data) != self.page_size:
            raise Unsupported("short page")
        return data

    def _read_page(self, number):
        data = self._read(number)
        start = 100 if number == 1 else 0
        kind = data[start]
        if kind not in (2, 5, 10, 13):
            raise Unsupported("page type %d" % kind)
        count = int.from_bytes(data[start + 3:start + 5], "big")
        interior = kind in (2, 5)
        pointers = start + (12 if interior else 8)
        if pointers + 2 * count > self.usable:
            raise Unsupported("too many cells")
        cells = _Cells(data, pointers, count, self.usable)
        right = int.from_bytes(data[start + 8:start + 12], "big") if interior else 0
        return kind, data, cells, right

    def _payload(self, data, pos, table_leaf):
        """A cell's payload, followed into its overflow pages if need be."""
        size, pos = _varint(data, pos)
        if table_leaf:
            _, pos = _varint(data, pos)  # rowid
            most = self.usable - 35
        else:
            most = (self.usable - 12) * 64 // 255 - 23
        if size <= most:
            if pos + size > self.usable:
                raise Unsupported("payload beyond the page")
            return data[pos:pos + size]
        if size > MAX_PAYLOAD:
            raise Unsupported("payload too large")
        least = (self.usable - 12) * 32 // 255 - 23
        local = least + (size - least) % (self.usable - 4)
        if local > most:
            local = least
        if pos + local + 4 > self.usable:
            raise Unsupported("payload beyond the page")
        parts = [data[pos:pos + local]]
        left = size - local
        number = int.from_bytes(data[pos + local:pos + local + 4], "big")
        for _ in range(self.pages):
            if not left:
                break
            page = self._read(number)
            part = page[4:4 + min(left, self.usable - 4)]
            parts.append(part)
            left -= len(part)
            number = int.from_bytes(page[:4], "big")
        if left:
            raise Unsupported("overflow chain too short")
        return b"".join(parts)

    def root_page(self, table):
        """The root page of table, which must be exactly the table qgrey
        creates, or None when no object of that name exists."""
        kind, data, cells, _ = self._page(1)
        if kind != 0x0D:
            raise Unsupported("large schema")
        found = []
        for cell in cells:
            row = _record(self._payload(data, cell, True))
            if len(row) == 5 and isinstance(row[1], bytes) and row[1].lower() == table:
                found.append(row)
        if not found:
            return None
        if len(found) != 1:
            raise Unsupported("more than one object named %r" % table)
        kind, name, owner, root, sql = found[0]
        if (kind, name, owner, sql) != (b"table", table, table, STORED_SCHEMA.get(table)):
            raise Unsupported("not the table qgrey creates")
        if type(root) is not int or not 2 <= root <= self.pages:
            raise Unsupported("bad root page")
        return root

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


def _row(record, key):
    """A row qgrey wrote: the key and four integers; anything else declines."""
    if (len(record) != 5 or record[0] != key
            or not all(type(value) is int for value in record[1:])):
        raise Unsupported("not a row of qgrey's")
    return record


def lookup(path, table, key, deadline=None):
    """-> the row (list) of key in table, or None. Raises Unsupported, Busy, OSError."""
    return lookup_many(path, table, [key], deadline)[0]


def lookup_many(path, table, keys, deadline=None):
    """-> the row (or None) of each key (None: not wanted) in one reading;
    SQLite's SHARED lock is waited for until deadline (monotonic). Whatever
    the bytes of the file, the answer is SQLite's, or Unsupported."""
    reader = Reader(path, time.monotonic() + 3 if deadline is None else deadline)
    try:
        root = reader.root_page(table)
        rows = []
        for key in keys:
            record = None if root is None or key is None else reader.find(root, key)
            rows.append(None if record is None else _row(record, key))
        return rows
    except (Unsupported, OSError):
        raise
    except Exception as err:  # any other surprise in the bytes: SQLite decides
        raise Unsupported("malformed: %r" % err)
    finally:
        reader.close()
