"""The dbm store, for interpreters that have dbm.gnu, dbm.ndbm or dbm.sqlite3.

Value of a key: b"first last passed tries". dbm.dumb is refused: a writer
killed mid-update loses most of its keys, and each call costs time in
proportion to the number of keys.
"""
from qgrey.policy import Entry
from qgrey.store import Store, StoreError, os_error

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


def encode(entry):
    return b"%d %d %d %d" % entry.fields()


def decode(value):
    fields = value.split()
    if len(fields) != 4:
        raise StoreError("database", "malformed value %r" % value[:40])
    return Entry(*map(int, fields))


class DbmStore(Store):
    def __init__(self, directory, lock_timeout, deadline, kind):
        self.kind, self.module = module(kind)
        self.file_name = FILE_NAMES[self.kind]
        self.errors = (self.module.error,)
        if self.kind == "dbm.sqlite3":  # some of its calls let sqlite3.Error through
            import sqlite3
            self.errors += (sqlite3.Error,)
        Store.__init__(self, directory, lock_timeout, deadline)
        self.db = None

    def _open(self, write):
        # qgrey's own flock serialises access; dbm.gnu's lock would not wait.
        flag = ("c" if write else "r") + ("u" if self.kind == "dbm.gnu" else "")
        try:
            self.db = self.module.open(self.path, flag, 0o600)
        except self.errors as err:
            # dbm.sqlite3.error is an OSError without an errno: test for the file.
            if not write and not self._exists():
                self.db = {}
                return
            if isinstance(err, OSError) and err.errno is not None:
                raise os_error(self.path, err)
            raise StoreError("database", "%s: %s" % (self.path, err))
        except OSError as err:
            if not write and err.errno == 2:
                self.db = {}
                return
            raise os_error(self.path, err)

    def _exists(self):
        import os
        return any(os.path.exists(self.path + s) for s in ("", ".db", ".pag", ".dir"))

    def _call(self, function, *args):
        try:
            return function(*args)
        except self.errors as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise os_error(self.path, err)
            raise StoreError("database", "%s: %s" % (self.path, err))
        except OSError as err:
            raise os_error(self.path, err)

    def _get(self, key):
        value = self._call(self.db.get, key.encode())
        return None if value is None else decode(value)

    def _put(self, key, entry):
        self._call(self.db.__setitem__, key.encode(), encode(entry))

    def _delete(self, key):
        if self._call(self.db.get, key.encode()) is not None:
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
