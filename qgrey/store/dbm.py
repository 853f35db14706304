"""The dbm store, for interpreters that have dbm.gnu, dbm.ndbm or dbm.sqlite3.

Value of a key: b"first last passed tries". dbm.dumb is refused: a writer
killed mid-update loses most of its keys, and each call costs time in
proportion to the number of keys.
"""
from qgrey.store import FileStore, StoreError, decode_entry, encode_entry, os_error, sqlite_reason

PREFERENCE = ("dbm.gnu", "dbm.ndbm", "dbm.sqlite3")
FILE_NAMES = {"dbm.gnu": "qgrey.gdbm", "dbm.ndbm": "qgrey.ndbm", "dbm.sqlite3": "qgrey.dbm-sqlite3"}


def module(kind):
    """The dbm module GL_STORE names ('dbm': the first one present)."""
    import importlib
    for name in PREFERENCE if kind == "dbm" else (kind,):
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    wanted = "any of " + ", ".join(PREFERENCE) if kind == "dbm" else kind
    raise StoreError("database", "GL_STORE=%s: this Python has not %s (dbm.dumb is not "
                     "safe enough); use GL_STORE=sqlite" % (kind, wanted))


class DbmStore(FileStore):
    def __init__(self, directory, lock_timeout, deadline, kind):
        self.kind, self.module = module(kind)
        self.file_name = FILE_NAMES[self.kind]
        self.errors = (self.module.error,)
        # Some of dbm.sqlite3's calls let sqlite3.Error through. (dbm.sqlite3
        # is Python 3.13's; the coverage run uses Debian's 3.11.)
        if self.kind == "dbm.sqlite3":  # pragma: no cover - see above
            import sqlite3
            self.errors += (sqlite3.Error,)
        FileStore.__init__(self, directory, lock_timeout, deadline)
        self.db = None
        self.snapshot = None

    def _open(self, write):
        # qgrey's own flock serialises access; dbm.gnu's lock would not wait.
        if not self._exists() and not write:
            self.db = {}
            return
        flag = ("c" if write else "r") + ("u" if self.kind == "dbm.gnu" else "")
        self.db = self._call(self.module.open, self.path, flag, 0o600)

    def _exists(self):
        """Whether the database's files are there; StoreError when one is
        not a regular file. The dbm modules open by path, and an open of a
        FIFO would wait for a writer: lstat first, which no link or FIFO
        passes. (Between the two only GL_DIR's owner or root could put
        something else there: qgrey refuses a directory anyone else may write.)"""
        import posix
        found = False
        for suffix in ("", ".db", ".pag", ".dir"):
            path = self.path + suffix
            try:
                st = posix.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise os_error(path, err)
            if st.st_mode & 0o170000 != 0o100000:
                raise StoreError("database", "%s is not a regular file" % path)
            found = True
        return found

    def _call(self, function, *args):
        try:
            return function(*args)
        except self.errors as err:  # some are OSErrors without errno
            if getattr(err, "errno", None):
                raise os_error(self.path, err)
            reason = sqlite_reason(str(err)) if self.kind == "dbm.sqlite3" else "database"
            if reason == "io" and self._no_space():  # pragma: no cover - dbm.sqlite3's only
                reason = "disk-full"  # SQLite in WAL mode says "disk I/O error" for ENOSPC
            raise StoreError(reason, "%s: %s" % (self.path, err))
        except OSError as err:  # pragma: no cover - dbm.sqlite3's (the others' errors are OSErrors)
            raise os_error(self.path, err)

    def _no_space(self):  # pragma: no cover - called for dbm.sqlite3 only
        """No block left for us on GL_DIR's file system."""
        import posix
        try:
            return posix.statvfs(self.dir).f_bavail == 0
        except OSError:
            return False

    def _get(self, key):
        value = self._call(self.db.get, key.encode())
        return None if value is None else decode_entry(value)

    def _put(self, key, entry):
        self._call(self.db.__setitem__, key.encode(), encode_entry(entry))

    def _delete(self, key):
        # Callers delete only keys just read under the same lock: never absent.
        if self._call(self.db.get, key.encode()) is not None:  # pragma: no branch
            self._call(self.db.__delitem__, key.encode())

    def _commit(self):
        if hasattr(self.db, "sync"):
            self._call(self.db.sync)

    def _close(self):
        if self.db is not None:
            db, self.db = self.db, None
            if hasattr(db, "close"):
                try:
                    db.close()
                except Exception:
                    pass

    # Beside the plugin: batch reads and maintenance.

    def _scan(self, after, limit):
        # dbm has no key order: the sorted key list is read once, in one hold
        # of the lock, and values are read batch by batch. Entries added
        # after that hold are not seen by this store object.
        import bisect
        if self.snapshot is None:
            self.snapshot = sorted(self._call(self.db.keys))
        start = bisect.bisect_right(self.snapshot, after.encode())
        rows = []
        for raw in self.snapshot[start:]:
            if len(rows) >= limit:
                break
            value = self._call(self.db.get, raw)
            if value is not None:
                rows.append((raw.decode("ascii", "surrogateescape"), decode_entry(value)))
        return rows

    def _integrity(self):
        problems = []
        for raw in self._call(self.db.keys):
            value = self._call(self.db.get, raw)
            try:
                raw.decode("ascii")
                decode_entry(value if value is not None else b"")
            except (UnicodeDecodeError, StoreError, ValueError):
                problems.append("bad entry %r: %r" % (raw[:60], (value or b"")[:40]))
                if len(problems) >= 20:
                    problems.append("(stopped after 20 bad entries)")
                    break
        return problems

    def _space(self):
        """-> (file bytes, None: dbm does not say how much of it is free)."""
        import os
        size = 0
        for suffix in ("", ".db", ".pag", ".dir"):
            try:
                size += os.stat(self.path + suffix).st_size
            except OSError:
                pass
        return size, None

    def _compact(self):
        if not hasattr(self.db, "reorganize"):
            return False
        self._call(self.db.reorganize)
        return True
