"""The default store: one SQLite file, GL_DIR/qgrey.sqlite.

Rollback journal with synchronous=FULL: a commit is on disk before the lock
is released, and a writer killed mid-commit leaves a hot journal that the
next writer rolls back. Lookups read the file directly (sqlitefile) and fall
back to SQLite when that reader declines.
"""
import posix

from qgrey.policy import Entry
from qgrey.store import Store, StoreError, os_error

TABLE = "entries"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries ("
    "key TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL, "
    "passed INTEGER NOT NULL, tries INTEGER NOT NULL) WITHOUT ROWID"
)


def _sqlite3():
    """The C module sqlite3 wraps: its Python half imports datetime and
    collections.abc for adapters that qgrey (text and integers) never uses."""
    try:
        import _sqlite3
        return _sqlite3
    except ImportError:  # pragma: no cover
        import sqlite3
        return sqlite3


class SqliteStore(Store):
    file_name = "qgrey.sqlite"

    def __init__(self, directory, lock_timeout, deadline=None):
        Store.__init__(self, directory, lock_timeout, deadline)
        self.db = None

    def lookup(self, key):
        from qgrey.store import sqlitefile
        self._locked(False)
        try:
            try:
                row = sqlitefile.lookup(self.path, TABLE.encode(), key.encode())
                return None if row is None else Entry(*row[1:5])
            except FileNotFoundError:
                return None
            except (sqlitefile.Unsupported, OSError):
                pass
            try:
                self._open(False)
                return self._get(key)
            except StoreError as err:
                if "no such table" in err.detail:
                    return None
                raise
        finally:
            self._close()
            self.lock.release()

    def _sql(self, statement, args=()):
        sqlite3 = _sqlite3()
        try:
            return self.db.execute(statement, args)
        except sqlite3.Error as err:
            raise self._error(err)

    def _error(self, err):
        sqlite3 = _sqlite3()
        text = str(err)
        if "disk is full" in text or "disk I/O" in text:
            reason = "disk-full" if "full" in text else "io"
        elif isinstance(err, sqlite3.OperationalError) and "locked" in text:
            reason = "lock-timeout"
        else:
            reason = "database"
        return StoreError(reason, "%s: %s" % (self.path, text))

    def _open(self, write):
        sqlite3 = _sqlite3()
        import time
        try:
            st = posix.lstat(self.path)
            if st.st_mode & 0o170000 != 0o100000:
                raise StoreError("database", "%s is not a regular file" % self.path)
        except FileNotFoundError:
            if not write:
                raise StoreError("database", "no such table")
        except OSError as err:
            raise os_error(self.path, err)
        # SQLite's own waits (another reader holding its lock) share the deadline.
        remaining = max(0.0, self.lock.deadline - time.monotonic())
        try:
            self.db = sqlite3.connect(self.path, timeout=remaining, isolation_level=None)
        except sqlite3.Error as err:
            raise self._error(err)
        self._sql("PRAGMA synchronous=FULL")
        if write:
            self._sql("BEGIN IMMEDIATE")

    def _get(self, key):
        sqlite3 = _sqlite3()
        try:
            row = self.db.execute(
                "SELECT first, last, passed, tries FROM entries WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise self._error(err)
            if not self.db.in_transaction:
                raise StoreError("database", "no such table")
            self._sql(SCHEMA)
            row = None
        except sqlite3.Error as err:
            raise self._error(err)
        return None if row is None else Entry(*row)

    def _put(self, key, entry):
        self._sql("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", (key,) + entry.fields())

    def _delete(self, key):
        self._sql("DELETE FROM entries WHERE key = ?", (key,))

    def _commit(self):
        self._sql("COMMIT")

    def _close(self):
        if self.db is not None:
            db, self.db = self.db, None
            sqlite3 = _sqlite3()
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                db.close()
            except sqlite3.Error:
                pass
