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
SQLite may read, and roll it back, then.

It answers only as SQLite would: the schema must be qgrey's one table
exactly (or empty: no such table); a key is searched as SQLite searches it
(the same cells compared in the same order, down to a leaf, then SQLite's
step to the next entry), on a path that must be a sound B-tree path (keys
in order and within their parents' keys, pages of the right type, no
cycle); a row is read only when its record is whole (its sizes add up to
its payload) and holds text and four integers. Anything else (WAL mode,
another object in the schema, an odd page or record) raises Unsupported,
and the caller asks SQLite itself.
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
# SQLite's cursor holds at most this many pages of a path (BTCURSOR_MAX_DEPTH):
# a deeper path is corrupt to SQLite.
MAX_DEPTH = 20
# The byte length of a value of each serial type below 12; None: 7 (a float)
# and 10, 11 (reserved), which qgrey never writes.
_LENGTHS = (0, 1, 2, 3, 4, 6, 8, None, 0, 0, None, None)
# The serial types of an integer: 1 to 8 bytes, the constants 0 and 1.
_INTEGERS = frozenset((1, 2, 3, 4, 5, 6, 8, 9))


def _varint(buf, pos):
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = value << 7 | byte & 0x7F
        if byte < 0x80:
            return value, pos + i + 1
    return value << 8 | buf[pos + 8], pos + 9


def _record(payload):
    """Record format -> (serial types, values: int, bytes or None), read as
    SQLite's OP_Column reads a record all of whose columns it wants: the
    serial types fill the header exactly, and the sizes they give add up to
    the payload exactly (SQLite calls the record corrupt otherwise)."""
    end = len(payload)
    header_size, pos = _varint(payload, 0)
    if not pos <= header_size <= end:
        raise Unsupported("record header beyond the payload")
    serials, values, at = [], [], header_size
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        if serial >= 12:
            size = (serial - 12) >> 1
            value = payload[at:at + size]
        else:
            size = _LENGTHS[serial]
            if size is None:  # 7: a float; 10, 11: reserved
                raise Unsupported("serial type %d" % serial)
            if serial >= 8:
                value = serial - 8
            elif serial:
                value = int.from_bytes(payload[at:at + size], "big", signed=True)
            else:
                value = None
        serials.append(serial)
        values.append(value)
        at += size
    if pos != header_size or at != end:
        raise Unsupported("record sizes do not add up to its payload")
    return serials, values


def _text_key(payload):
    """The first column of an index record, which must be text, without the
    rest; read as SQLite's comparison (vdbeRecordCompareString) reads it, so
    the header size must be one byte, and the text must lie in the payload."""
    header_size = payload[0]
    serial, pos = _varint(payload, 1)
    if header_size >= 0x80 or pos > header_size or serial < 13 or not serial & 1:
        raise Unsupported("key is not text")
    end = header_size + ((serial - 13) >> 1)
    if end > len(payload):
        raise Unsupported("key beyond the payload")
    return payload[header_size:end]


def _row(payload, key):
    """A row qgrey wrote: the key (text) and four integers; anything else declines."""
    serials, values = _record(payload)
    if (len(values) != 5 or serials[0] < 13 or not serials[0] & 1 or values[0] != key
            or not _INTEGERS.issuperset(serials[1:])):
        raise Unsupported("not a row of qgrey's")
    return values


class Reader:
    def __init__(self, path, deadline):
        # O_NONBLOCK: a FIFO there must not stall the session.
        self.fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC
                             | posix.O_NONBLOCK)
        try:
            if posix.fstat(self.fd).st_mode & 0o170000 != 0o100000:
                raise Unsupported("not a regular file")  # SqliteStore._open says so
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
            # More cells than this on a page are corrupt to SQLite (MX_CELL).
            self.max_cells = (self.page_size - 8) // 6
            # SQLite never reads the page holding its lock bytes.
            self.lock_page = PENDING_BYTE // self.page_size + 1
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
        if not 1 <= number <= self.pages or number == self.lock_page:
            raise Unsupported("page %d out of range" % number)
        data = posix.pread(self.fd, self.page_size, (number - 1) * self.page_size)
        if len(data) != self.page_size:
            raise Unsupported("short page")
        return data

    def _read_page(self, number):
        """-> (type, data, offset of the cell pointers, cell count, right
        child), the header checked as SQLite checks it (btreeInitPage), and
        the cell pointers within the usable space."""
        data = self._read(number)
        start = 100 if number == 1 else 0
        kind = data[start]
        if kind not in (2, 5, 10, 13):
            raise Unsupported("page type %d" % kind)
        count = data[start + 3] << 8 | data[start + 4]
        interior = kind < 8
        pointers = start + (12 if interior else 8)
        if count > self.max_cells or pointers + 2 * count > self.usable:
            raise Unsupported("too many cells")
        right = int.from_bytes(data[start + 8:start + 12], "big") if interior else 0
        return kind, data, pointers, count, right

    def _payload(self, data, pos, table_leaf):
        """A cell's payload, followed into its overflow pages if need be."""
        size, after = _varint(data, pos)
        if after - pos > 4:  # SQLite reads a longer size its own way
            raise Unsupported("payload size")
        pos = after
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
        seen = set()
        while left:
            if number in seen:
                raise Unsupported("overflow chain in a loop")
            seen.add(number)
            page = self._read(number)
            part = page[4:4 + min(left, self.usable - 4)]
            parts.append(part)
            left -= len(part)
            number = int.from_bytes(page[:4], "big")
        return b"".join(parts)

    def root_page(self, table):
        """The root page of table, which must be exactly the table qgrey
        creates, or None when the schema is empty (no such table).

        SQLite reads and parses every row of its schema before any
        statement, and calls the whole file malformed when one is corrupt,
        or names in its columns another object than its statement creates
        (sqlite3CheckObjectName), or its statement does not parse. The
        reader cannot parse SQL: the schema must be qgrey's one row, well
        formed and exactly as qgrey's SQLite writes it, or empty."""
        kind, data, pointers, count, _ = self._page(1)
        if kind != 0x0D:
            raise Unsupported("large schema")
        end = pointers + 2 * count
        found = None
        for index in range(count):
            at = pointers + 2 * index
            cell = data[at] << 8 | data[at + 1]
            if not end <= cell < self.usable:
                raise Unsupported("cell pointer out of the page")
            serials, row = _record(self._payload(data, cell, True))
            expected = (b"table", table, table, STORED_SCHEMA.get(table))
            if (found is not None or len(row) != 5 or serials[3] not in _INTEGERS
                    or any(s < 13 or not s & 1 for s in serials[:3] + serials[4:])
                    or (row[0], row[1], row[2], row[4]) != expected):
                raise Unsupported("a schema other than qgrey's one table")
            found = row[3]
            if not 2 <= found <= self.pages:
                raise Unsupported("bad root page")
        return found

    def find(self, root, key):
        """-> the payload of the record whose first column is key, or None.

        The search is SQLite's own for this SELECT (OP_SeekGE, that is
        sqlite3BtreeIndexMoveto, then OP_IdxGT): the same cells compared in
        the same order, always down to a leaf (an equal key compares as
        greater), then a step to the next entry where the leaf's last cell
        compared is less than key (up into an interior cell if the leaf
        ends there). The key is found only where it was compared equal on
        the way and the step lands on that very cell.

        The path must also be a sound B-tree path, which SQLite does not
        check: every key compared lies strictly between the keys compared
        before it on either side (so the cells compared on a page are in
        order, and a child's keys lie between its parent's keys around it);
        pages are index pages, those below the root hold cells; child page
        numbers are in range and not repeated; the path is no deeper than
        SQLite's cursor goes. Anything else declines."""
        usable, pages = self.usable, self.pages
        number = root
        low = high = None  # every key compared from here on lies between these
        path = []  # interior pages passed: (number, cell count, index gone down at)
        found = None  # (number, index, payload) where key was compared equal
        for _ in range(MAX_DEPTH):
            kind, data, pointers, count, right = self._page(number)
            if kind == 0x0A:
                offset = 0
            elif kind == 0x02:
                offset = 4
            else:
                raise Unsupported("page type %d" % kind)
            if not count:
                if path or offset:
                    raise Unsupported("page %d without cells" % number)
                return None  # an empty table
            end = pointers + 2 * count
            lower, upper = 0, count - 1
            index = upper >> 1
            while True:
                at = pointers + 2 * index
                cell = data[at] << 8 | data[at + 1]
                if not end <= cell < usable:
                    raise Unsupported("cell pointer out of the page")
                payload = self._payload(data, cell + offset, False)
                cell_key = _text_key(payload)
                if (low is not None and cell_key <= low) or (high is not None and cell_key >= high):
                    raise Unsupported("keys out of order on page %d" % number)
                if cell_key < key:
                    less = True
                    lower, low = index + 1, cell_key
                else:
                    less = False
                    if cell_key == key:
                        found = number, index, payload
                    upper, high = index - 1, cell_key
                if lower > upper:
                    break
                index = (lower + upper) >> 1
            if not offset:
                break
            if lower < count:
                at = pointers + 2 * lower
                cell = data[at] << 8 | data[at + 1]  # compared above: within the page
                child = int.from_bytes(data[cell:cell + 4], "big")
            else:
                child = right
            path.append((number, count, lower))
            if not 2 <= child <= pages or any(child == p[0] for p in path):
                raise Unsupported("child page %d" % child)
            number = child
        else:
            raise Unsupported("tree deeper than SQLite reads")
        if found is None:
            return None
        if less:  # the step to the next entry
            index += 1
            if index == count:
                for number, count, index in reversed(path):
                    if index < count:
                        break
                else:
                    raise Unsupported("no entry after the leaf")
        if (number, index) != found[:2]:
            raise Unsupported("key found away from where SQLite's search ends")
        return found[2]


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
            payload = None if root is None or key is None else reader.find(root, key)
            rows.append(None if payload is None else _row(payload, key))
        return rows
    except (Unsupported, OSError):
        raise
    except Exception as err:  # any other surprise in the bytes: SQLite decides
        raise Unsupported("malformed: %r" % err)
    finally:
        reader.close()
