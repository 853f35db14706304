"""The default store: one SQLite file, GL_DIR/qgrey.sqlite.

Rollback journal with synchronous=FULL (SQLite's defaults): a commit is on disk before the lock
is released, and a writer killed mid-commit leaves a hot journal that the
next writer rolls back. Lookups read the file directly (sqlitefile) and fall
back to SQLite when that reader declines.
"""
import posix

from qgrey.record import Entry
from qgrey.store import FileStore, StoreError, check_directory, os_error, sqlite_reason
from qgrey.store.sqlitefile import SCHEMA  # the reader reads exactly this table

sqlite3 = None  # loaded by _open: a lookup of a known triplet does without it


# Not measured: coverage imports functools first, so a measured process
# never uses the stub (test_cov_sqlite.py checks a write without coverage).
def _pass_through(maxsize=128, typed=False):  # pragma: no cover - see above
    return lambda function: function


def _load_sqlite():
    """The SQLite module, loaded as cheaply as this Python allows.

    The C module alone: the sqlite3 package adds datetime and more, for
    adapters qgrey does not use. From Python 3.11 the C module builds its
    statement cache with functools.lru_cache, and importing functools (and
    collections with it) costs half a Python start-up; a process that runs
    four statements needs no cache, so when functools is not loaded yet the
    module is given a pass-through lru_cache for its import, and functools
    is forgotten again. Any surprise: the plain import.
    """
    global sqlite3
    if sqlite3 is not None:
        return
    import sys
    stub = None
    if "functools" not in sys.modules:  # pragma: no cover - loaded under coverage
        stub = type(sys)("functools")
        stub.lru_cache = _pass_through
        sys.modules["functools"] = stub
    try:
        import _sqlite3 as module
    except Exception:  # pragma: no cover - another implementation
        module = None
    finally:
        if stub is not None and sys.modules.get("functools") is stub:  # pragma: no cover - as above
            del sys.modules["functools"]
    if module is None:  # pragma: no cover - another implementation
        sys.modules.pop("_sqlite3", None)
        import sqlite3 as module
    sqlite3 = module

TABLE = "entries"


class SqliteStore(FileStore):
    file_name = "qgrey.sqlite"

    def __init__(self, directory, lock_timeout, deadline=None):
        FileStore.__init__(self, directory, lock_timeout, deadline)
        self.db = None

    def lookup_many(self, keys):
        """Reads take SQLite's own shared lock, not qgrey's flock: a read
        waits only while a writer commits, never for a queue of writers."""
        from qgrey.store import sqlitefile
        if not self.checked:
            check_directory(self.dir)
            self.checked = True
        try:
            rows = sqlitefile.lookup_many(self.path, TABLE.encode(),
                                          [None if k is None else k.encode() for k in keys],
                                          self.lock.deadline)
            return [None if row is None else Entry(*row[1:5]) for row in rows]
        except FileNotFoundError:
            return [None] * len(keys)
        except sqlitefile.Busy:
            raise StoreError("lock-timeout", "%s: a writer held SQLite's lock until the "
                             "deadline" % self.path)
        except (sqlitefile.Unsupported, OSError):
            pass
        try:
            self._open(False)
            return [None if key is None else self._get(key) for key in keys]
        except StoreError as err:
            if "no such table" in err.detail:
                return [None] * len(keys)
            raise
        finally:
            self._close()

    def _sql(self, statement, args=()):
        try:
            return self.db.execute(statement, args)
        except sqlite3.Error as err:
            raise self._error(err)

    def _error(self, err):
        return StoreError(sqlite_reason(str(err)), "%s: %s" % (self.path, err))

    def _prepare(self):
        _load_sqlite()

    def _open(self, write):
        import time
        _load_sqlite()
        new = False
        try:
            # SQLite opens by path and would wait on a FIFO: lstat first, which
            # no link or FIFO passes. Only GL_DIR's owner or root could put
            # something else there before SQLite opens it: qgrey refuses a
            # directory anyone else may write.
            st = posix.lstat(self.path)
            if st.st_mode & 0o170000 != 0o100000:
                raise StoreError("database", "%s is not a regular file" % self.path)
            new = st.st_size == 0
        except FileNotFoundError:
            if not write:
                raise StoreError("database", "no such table")
            new = True
        except OSError as err:
            raise os_error(self.path, err)
        journal = self.path + "-journal"  # SQLite writes it, and reads a hot one
        try:
            if posix.lstat(journal).st_mode & 0o170000 != 0o100000:
                raise StoreError("database", "%s is not a regular file" % journal)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise os_error(journal, err)
        # SQLite's own waits (another reader holding its lock) share the deadline.
        remaining = max(0.0, self.lock.deadline - time.monotonic())
        try:
            self.db = sqlite3.connect(self.path, timeout=remaining, isolation_level=None)
        except sqlite3.Error as err:
            raise self._error(err)
        if write:
            if new:
                # Lets qgrey-expire give free pages back in small steps
                # (_release); it takes effect with the first table.
                self._sql("PRAGMA auto_vacuum=INCREMENTAL")
            self._sql("BEGIN IMMEDIATE")

    def _get(self, key):
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
        self._sql("INSERT OR REPLACE INTO entries (key, first, last, passed, tries) "
                  "VALUES (?, ?, ?, ?, ?)", (key,) + entry.fields())

    def _delete(self, key):
        self._sql("DELETE FROM entries WHERE key = ?", (key,))

    def _commit(self):
        self._sql("COMMIT")

    def _close(self):
        if self.db is not None:
            db, self.db = self.db, None
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                db.close()
            except sqlite3.Error:
                pass

    # Beside the plugin: batch reads and maintenance.

    def _scan(self, after, limit):
        try:
            rows = self.db.execute(
                "SELECT key, first, last, passed, tries FROM entries WHERE key > ? "
                "ORDER BY key LIMIT ?", (after, limit)).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return []
            raise self._error(err)
        except sqlite3.Error as err:
            raise self._error(err)
        return [(row[0], Entry(*row[1:])) for row in rows]

    def _ensure(self):
        self._sql(SCHEMA)

    def _integrity(self):
        """-> list of problems (empty when the file is sound)."""
        rows = self._sql("PRAGMA integrity_check").fetchall()
        problems = [row[0] for row in rows if row[0] != "ok"]
        tables = [row[0] for row in self._sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        if tables and TABLE not in tables:
            problems.append("no table %s: not a qgrey database" % TABLE)
        elif TABLE in tables:
            bad = self._sql("SELECT count(*) FROM entries WHERE typeof(first) != 'integer' OR "
                            "typeof(last) != 'integer' OR typeof(passed) != 'integer' OR "
                            "typeof(tries) != 'integer'").fetchone()[0]
            if bad:
                problems.append("%d entries with non-integer fields" % bad)
        return problems

    def _space(self):
        """-> (file bytes, bytes in free pages)."""
        page_size = self._sql("PRAGMA page_size").fetchone()[0]
        pages = self._sql("PRAGMA page_count").fetchone()[0]
        free = self._sql("PRAGMA freelist_count").fetchone()[0]
        return pages * page_size, free * page_size

    def _compact(self):
        self._sql("COMMIT")  # VACUUM cannot run inside a transaction
        self._sql("PRAGMA auto_vacuum=INCREMENTAL")  # older files: from now on
        self._sql("VACUUM")

    def _release(self, pages):
        """Give up to pages free pages back to the file system in this hold
        of the lock -> how many, or None when the file was not created for
        it (auto_vacuum=INCREMENTAL; qgrey-expire --vacuum converts it)."""
        if self._sql("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return None
        before = self._sql("PRAGMA freelist_count").fetchone()[0]
        try:
            # executescript steps the pragma to its end (execute frees one page).
            self.db.executescript("PRAGMA incremental_vacuum(%d);" % pages)
        except sqlite3.Error as err:
            raise self._error(err)
        return before - self._sql("PRAGMA freelist_count").fetchone()[0]
