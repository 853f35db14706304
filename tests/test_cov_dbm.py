"""The dbm store through the store interface (qgrey.store.FileStore), on
each dbm kind this Python has: batch reads over a key list read once,
entries removed meanwhile, the integrity check's bound, a path the system
refuses. Values are checked against the dbm module read directly."""
import importlib
import os
import sys

import pytest

from qgrey.record import Entry
from qgrey.store import StoreError
from qgrey.store.dbm import DbmStore
from skips import kind_params

DBM_KINDS = [p for p in kind_params() if p.values[0] != "sqlite"]
FILES = {"dbm.gnu": "qgrey.gdbm", "dbm.ndbm": "qgrey.ndbm", "dbm.sqlite3": "qgrey.dbm-sqlite3"}


def open_store(directory, kind):
    return DbmStore(directory, 5.0, None, kind)


def lookup_error(directory, kind):
    """The StoreError a lookup in a fresh store of directory raises."""
    store = open_store(directory, kind)
    try:
        with pytest.raises(StoreError) as caught:
            store.lookup("k")
    finally:
        store.close()
    return caught.value


def write_raw(directory, kind, items):
    """Write raw key/value pairs with the dbm module itself."""
    module = importlib.import_module(kind)
    db = module.open(os.path.join(directory, FILES[kind]), "c", 0o600)
    try:
        for key, value in items:
            db[key] = value
    finally:
        db.close()


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_entries_batch_by_batch_in_key_order(gl_dir, kind):
    store = open_store(gl_dir, kind)
    try:
        assert store.put_many([("k%d" % i, Entry(100 + i, 200 + i, i, i + 1))
                               for i in (4, 0, 3, 1, 2)]) == 5
        assert list(store.entries(batch=2)) == [
            ("k0", Entry(100, 200, 0, 1)), ("k1", Entry(101, 201, 1, 2)),
            ("k2", Entry(102, 202, 2, 3)), ("k3", Entry(103, 203, 3, 4)),
            ("k4", Entry(104, 204, 4, 5))]
    finally:
        store.close()
    module = importlib.import_module(kind)
    db = module.open(os.path.join(gl_dir, FILES[kind]), "r")
    try:
        assert db[b"k3"] == b"103 203 3 4"
    finally:
        db.close()


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_a_key_removed_between_batches_is_not_returned(gl_dir, kind):
    write_raw(gl_dir, kind, [(b"a", b"1 2 0 1"), (b"b", b"3 4 0 1"), (b"c", b"5 6 1 2"),
                             (b"d", b"7 8 0 1")])
    store = open_store(gl_dir, kind)
    try:
        assert store.scan("", 2) == [("a", Entry(1, 2, 0, 1)), ("b", Entry(3, 4, 0, 1))]
        removed, done = store.remove_if(["c"], lambda key, entry: True)
        assert (removed, done) == ([("c", Entry(5, 6, 1, 2))], 1)
        # The key list was read once, at the first batch: c is in it, and skipped.
        assert store.scan("b", 2) == [("d", Entry(7, 8, 0, 1))]
    finally:
        store.close()
    # A store opened afterwards reads the key list again, without c.
    store = open_store(gl_dir, kind)
    try:
        assert [key for key, _ in store.entries()] == ["a", "b", "d"]
    finally:
        store.close()


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_integrity_stops_after_twenty_bad_entries(gl_dir, kind):
    write_raw(gl_dir, kind, [(b"bad%02d" % i, b"garbage") for i in range(25)]
              + [(b"good", b"1 2 0 1")])
    store = open_store(gl_dir, kind)
    try:
        problems = store.maintain(lambda s: s._integrity(), exclusive=False)
    finally:
        store.close()
    assert len(problems) == 21
    assert problems[20] == "(stopped after 20 bad entries)"
    bad = ["bad entry b'bad%02d': b'garbage'" % i for i in range(25)]
    assert all(line in bad for line in problems[:20]), problems
    assert len(set(problems[:20])) == 20


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_integrity_names_each_bad_entry(gl_dir, kind):
    write_raw(gl_dir, kind, [(b"x", b"1 2 3"), (b"\xff", b"1 2 0 1"), (b"ok", b"1 2 0 1")])
    store = open_store(gl_dir, kind)
    try:
        problems = store.maintain(lambda s: s._integrity(), exclusive=False)
    finally:
        store.close()
    assert sorted(problems) == ["bad entry b'\\xff': b'1 2 0 1'", "bad entry b'x': b'1 2 3'"]


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_a_database_path_the_system_refuses_is_an_io_error(tmp_path, kind):
    # GL_DIR itself is usable, but its path is so long that the database's
    # name with a suffix (".db", ".pag") passes PATH_MAX: lstat fails with
    # ENAMETOOLONG, not ENOENT.
    directory = str(tmp_path)
    while len(directory) < 4083 - 201:
        directory += "/" + "d" * 200
    directory += "/" + "e" * (4083 - len(directory) - 1)
    assert len(directory) == 4083
    os.makedirs(directory, mode=0o700)
    error = lookup_error(directory, kind)
    assert error.reason == "io"
    path = directory + "/" + FILES[kind]
    # dbm.sqlite3 names its file as given; the others add a suffix (.db, .pag).
    suffix = "" if kind == "dbm.sqlite3" else ".db"
    assert error.detail == path + suffix + ": File name too long"


def test_a_kind_this_python_lacks_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "dbm.ndbm", None)  # import dbm.ndbm: ImportError
    with pytest.raises(StoreError) as caught:
        DbmStore("/nonexistent", 1.0, None, "dbm.ndbm")
    assert caught.value.reason == "database"
    assert str(caught.value) == ("GL_STORE=dbm.ndbm: this Python has not dbm.ndbm (dbm.dumb is "
                                 "not safe enough); use GL_STORE=sqlite")


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_a_lookup_before_the_first_write_creates_nothing(gl_dir, kind):
    store = open_store(gl_dir, kind)
    try:
        assert store.lookup_many(["a", None, "b"]) == [None, None, None]
        assert store.scan("", 10) == []
    finally:
        store.close()
    assert sorted(os.listdir(gl_dir)) == ["lock"]


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_a_database_path_that_is_no_regular_file(gl_dir, kind):
    path = os.path.join(gl_dir, FILES[kind])
    os.mkfifo(path)
    error = lookup_error(gl_dir, kind)
    assert (error.reason, error.detail) == ("database", path + " is not a regular file")


@pytest.mark.parametrize("kind", [p for p in DBM_KINDS if p.values[0] == "dbm.gnu"])
def test_a_damaged_gdbm_file_is_a_database_error(gl_dir, kind):
    path = os.path.join(gl_dir, FILES[kind])
    with open(path, "wb") as f:
        f.write(b"garbage" * 100)
    error = lookup_error(gl_dir, kind)
    assert (error.reason, error.detail) == ("database", path + ": Bad magic number")


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_space_and_compaction(gl_dir, kind):
    store = open_store(gl_dir, kind)
    try:
        store.put_many([("k%d" % i, Entry(i, i, 0, 1)) for i in range(50)])
        size, free = store.maintain(lambda s: s._space())
        # Reorganising is dbm.gnu's alone.
        compacted = store.maintain(lambda s: s._compact())
    finally:
        store.close()
    on_disk = sum(os.stat(os.path.join(gl_dir, name)).st_size for name in os.listdir(gl_dir)
                  if name.startswith(FILES[kind]))
    assert (size, free) == (on_disk, None)
    assert compacted is (kind == "dbm.gnu")


@pytest.mark.parametrize("kind", [p for p in DBM_KINDS if p.values[0] == "dbm.ndbm"])
def test_a_damaged_ndbm_file_is_an_io_error(gl_dir, kind):
    # Berkeley DB refuses the file with an errno (EINVAL): an OSError, io.
    path = os.path.join(gl_dir, FILES[kind])
    with open(path + ".db", "wb") as f:
        f.write(b"garbage" * 1000)
    error = lookup_error(gl_dir, kind)
    assert (error.reason, error.detail) == ("io", path + ": Invalid argument")


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_the_lock_file_in_a_directory_that_takes_no_new_file(gl_dir, kind):
    from conftest import read_only
    lock = os.path.join(gl_dir, "lock")
    store = open_store(gl_dir, kind)
    try:
        with read_only(gl_dir):
            with pytest.raises(StoreError) as caught:
                store.lookup("k")
        assert (caught.value.reason, caught.value.detail) == (
            "io", "cannot open lock file %s: %s" % (lock, os.strerror(1 if os.geteuid() == 0 else 13)))
    finally:
        store.close()
    # With the lock file and the database there, lookups still read.
    store = open_store(gl_dir, kind)
    try:
        store.put_many([("k", Entry(1, 2, 0, 1))])
    finally:
        store.close()
    os.chmod(lock, 0o400)
    store = open_store(gl_dir, kind)
    try:
        with read_only(gl_dir):
            if kind == "dbm.sqlite3":  # WAL: SQLite writes beside the file even to read
                with pytest.raises(StoreError) as caught:
                    store.lookup("k")
                assert (caught.value.reason, caught.value.detail) == (
                    "io", "%s/qgrey.dbm-sqlite3: unable to open database file" % gl_dir)
            else:
                assert store.lookup("k") == Entry(1, 2, 0, 1)
    finally:
        store.close()


@pytest.mark.parametrize("kind", DBM_KINDS)
def test_a_lock_that_is_a_directory(gl_dir, kind):
    lock = os.path.join(gl_dir, "lock")
    os.mkdir(lock)
    error = lookup_error(gl_dir, kind)
    assert (error.reason, error.detail) == (
        "io", "cannot open lock file %s: Is a directory" % lock)
