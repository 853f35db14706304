"""The SQLite store through the store interface (qgrey.store.FileStore) on
files it did not write: a foreign table, columns not qgrey's, fields not
integers, an empty database, paths the system refuses. The files are made
with the sqlite3 module directly; every expected text is written out."""
import os
import sqlite3

import pytest

from qgrey.record import Entry
from qgrey.store import StoreError
from qgrey.store.sqlite import SqliteStore

QGREY_TABLE = ("CREATE TABLE entries (key TEXT PRIMARY KEY, first INTEGER NOT NULL, "
               "last INTEGER NOT NULL, passed INTEGER NOT NULL, tries INTEGER NOT NULL) "
               "WITHOUT ROWID")


def make_db(directory, *statements):
    db = sqlite3.connect(os.path.join(directory, "qgrey.sqlite"))
    try:
        for statement in statements:
            db.execute(statement)
        db.commit()
    finally:
        db.close()


def with_store(directory, what):
    store = SqliteStore(directory, 5.0)
    try:
        return what(store)
    finally:
        store.close()


def integrity(directory):
    return with_store(directory, lambda s: s.maintain(lambda t: t._integrity(), exclusive=False))


def test_integrity_of_a_sound_database(gl_dir):
    make_db(gl_dir, QGREY_TABLE, "INSERT INTO entries VALUES ('k', 1, 2, 0, 1)")
    assert integrity(gl_dir) == []


def test_integrity_of_an_empty_database(gl_dir):
    make_db(gl_dir, "PRAGMA user_version = 1")  # a database file with no table yet
    assert os.path.getsize(os.path.join(gl_dir, "qgrey.sqlite")) > 0
    assert integrity(gl_dir) == []


def test_integrity_of_another_programs_database(gl_dir):
    make_db(gl_dir, "CREATE TABLE other (x)")
    assert integrity(gl_dir) == ["no table entries: not a qgrey database"]


def test_integrity_counts_entries_with_fields_not_integers(gl_dir):
    make_db(gl_dir, QGREY_TABLE, "INSERT INTO entries VALUES ('a', 1, 2, 0, 1)",
            "INSERT INTO entries VALUES ('b', 'x', 2, 0, 1)",
            "INSERT INTO entries VALUES ('c', 1, 2.5, 0, 1)")
    assert integrity(gl_dir) == ["2 entries with non-integer fields"]


def test_scan_of_a_database_without_qgreys_table_is_empty(gl_dir):
    make_db(gl_dir, "CREATE TABLE other (x)")
    assert with_store(gl_dir, lambda s: s.scan("", 10)) == []
    assert with_store(gl_dir, lambda s: list(s.entries())) == []


def test_columns_not_qgreys_are_a_database_error(gl_dir):
    make_db(gl_dir, "CREATE TABLE entries (key TEXT PRIMARY KEY, value TEXT)",
            "INSERT INTO entries VALUES ('k', 'v')")
    path = os.path.join(gl_dir, "qgrey.sqlite")
    for what in (lambda s: s.lookup("k"), lambda s: s.scan("", 10)):
        with pytest.raises(StoreError) as caught:
            with_store(gl_dir, what)
        assert caught.value.reason == "database"
        assert caught.value.detail == path + ": no such column: first"


def long_directory(tmp_path, length):
    """A directory whose path has exactly length characters."""
    directory = str(tmp_path)
    while len(directory) < length - 201:
        directory += "/" + "d" * 200
    directory += "/" + "e" * (length - len(directory) - 1)
    assert len(directory) == length
    os.makedirs(directory, mode=0o700)
    return directory


def test_a_database_path_the_system_refuses_is_an_io_error(tmp_path):
    # GL_DIR and its lock files are usable; GL_DIR/qgrey.sqlite passes PATH_MAX.
    directory = long_directory(tmp_path, 4083)
    with pytest.raises(StoreError) as caught:
        with_store(directory, lambda s: s.lookup("k"))
    assert caught.value.reason == "io"
    assert caught.value.detail == directory + "/qgrey.sqlite: File name too long"


def test_a_journal_path_the_system_refuses_is_an_io_error(tmp_path):
    # GL_DIR/qgrey.sqlite is within PATH_MAX, its journal's name is not.
    directory = long_directory(tmp_path, 4080)
    assert with_store(directory, lambda s: s.lookup("k")) is None
    with pytest.raises(StoreError) as caught:
        with_store(directory, lambda s: s.put_many([("k", Entry(1, 2, 0, 1))]))
    assert caught.value.reason == "io"
    assert caught.value.detail == directory + "/qgrey.sqlite-journal: File name too long"
    assert sorted(os.listdir(directory)) == ["lock", "lock.queue"]


WRITE_WITHOUT_FUNCTOOLS = r"""
import sys
sys.path.insert(0, sys.argv[1])
from qgrey.record import Entry
from qgrey.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[2], 5.0)
store.put_many([("k", Entry(1, 2, 0, 1))])
print(store.lookup("k"), "functools" in sys.modules, sys.modules["_sqlite3"].__name__)
"""


def test_a_write_loads_sqlite_without_functools(gl_dir):
    # Python started as the launcher starts it (-I -S: no site, so no
    # coverage either): the pass-through lru_cache stands in for functools
    # while _sqlite3 is imported, and functools is not left loaded.
    import subprocess
    import sys
    import qgrey
    package = os.path.dirname(os.path.dirname(os.path.abspath(qgrey.__file__)))
    result = subprocess.run([sys.executable, "-I", "-S", "-c", WRITE_WITHOUT_FUNCTOOLS, package,
                             gl_dir], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "Entry(1, 2, 0, 1) False _sqlite3\n", "")
    db = sqlite3.connect(os.path.join(gl_dir, "qgrey.sqlite"))
    try:
        assert db.execute("SELECT * FROM entries").fetchall() == [("k", 1, 2, 0, 1)]
    finally:
        db.close()


def test_a_database_sqlite_cannot_create_is_an_io_error(gl_dir):
    # The lock files are there already; GL_DIR takes no new file (chattr +i
    # as root): SQLite cannot create the database.
    from conftest import read_only
    for name in ("lock", "lock.queue"):
        open(os.path.join(gl_dir, name), "w").close()
    with read_only(gl_dir):
        with pytest.raises(StoreError) as caught:
            with_store(gl_dir, lambda s: s.put_many([("k", Entry(1, 2, 0, 1))]))
    assert (caught.value.reason, caught.value.detail) == (
        "io", os.path.join(gl_dir, "qgrey.sqlite") + ": unable to open database file")
    assert sorted(os.listdir(gl_dir)) == ["lock", "lock.queue"]


@pytest.mark.parametrize("text, reason", [
    ("database or disk is full", "disk-full"),
    ("disk I/O error", "io"),
    ("attempt to write a readonly database", "io"),
    ("unable to open database file", "io"),
    ("database is locked", "lock-timeout"),
    ("database table is locked", "lock-timeout"),
    ("database disk image is malformed", "database"),
    ("file is not a database", "database"),
])
def test_the_reason_logged_for_each_sqlite_message(text, reason):
    from qgrey.store import sqlite_reason
    assert sqlite_reason(text) == reason
