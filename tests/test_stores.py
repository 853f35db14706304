"""Every store kind this Python has, through the installed plugin and directly.

What is stored is read, and written, here with the database's own module
(sqlite3 on the file, the dbm module directly), never through qgrey's
stores, and compared with values written out here.
"""
import importlib
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from qgrey import settings
from skips import kind_params
from qgrey.policy import Entry
from qgrey.store import open_store

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"


def available(name):
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


KINDS = ["sqlite"] + [k for k in ("dbm.gnu", "dbm.ndbm", "dbm.sqlite3") if available(k)]


def store_for(gl_dir, kind):
    return open_store(settings.load({b"GL_DIR": gl_dir.encode(), b"GL_STORE": kind.encode()}))


def set_entry(gl_dir, kind, key, entry):
    store = store_for(gl_dir, kind)
    try:
        store.update(key, lambda old: (None, entry))
    finally:
        store.close()


def get_entry(gl_dir, kind, key):
    store = store_for(gl_dir, kind)
    try:
        return store.lookup(key)
    finally:
        store.close()


KEY = "198.51.100.0/24 alice@example.org bob@example.net"
# The database file of each kind (man qgrey, FILES).
FILES = {"sqlite": "qgrey.sqlite", "dbm.gnu": "qgrey.gdbm", "dbm.ndbm": "qgrey.ndbm",
         "dbm.sqlite3": "qgrey.dbm-sqlite3"}


def stored(gl_dir, kind):
    """{key: b"first last passed tries"} as the database's own module reads
    the file: for SQLite, the entries table's rows (typed INTEGER, checked)."""
    path = os.path.join(gl_dir, FILES[kind])
    if kind == "sqlite":
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = db.execute("SELECT key, first, last, passed, tries, typeof(first), "
                              "typeof(last), typeof(passed), typeof(tries) FROM entries").fetchall()
        finally:
            db.close()
        assert all(row[5:] == ("integer",) * 4 for row in rows), rows
        return {row[0]: b"%d %d %d %d" % row[1:5] for row in rows}
    module = importlib.import_module(kind)
    db = module.open(path, "r")
    try:
        return {k.decode(): db[k] for k in db.keys()}
    finally:
        db.close()


def store_raw(gl_dir, kind, key, value):
    """Write key's value (b"first last passed tries") with the database's
    own module, as an administrator's script would."""
    path = os.path.join(gl_dir, FILES[kind])
    if kind == "sqlite":
        with sqlite3.connect(path) as db:
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                       [key] + [int(f) for f in value.split()])
        db.close()
        return
    db = importlib.import_module(kind).open(path, "w")
    try:
        db[key.encode()] = value
    finally:
        db.close()


# The machine's clock may be stepped by a second or two between reading it
# here and in the plugin (a virtual machine's clock is adjusted so): the
# times stored are checked against the test's with that much room.
STEP = 2


@pytest.mark.parametrize("kind", kind_params())  # a kind this Python lacks: a listed skip
def test_a_whole_cycle(run, gl_dir, kind):
    started = int(time.time())
    assert run(GL_STORE=kind).stdout == GREYLISTED
    assert run(GL_STORE=kind).stdout == GREYLISTED
    ended = int(time.time())
    entries = stored(gl_dir, kind)
    assert list(entries) == [KEY]
    first, last, passed, tries = map(int, entries[KEY].split())
    assert started - STEP <= first <= last <= ended + STEP and (passed, tries) == (0, 2), entries
    # Seen 600 s earlier: its retry is accepted.
    store_raw(gl_dir, kind, KEY, b"%d %d 0 2" % (first - 600, last - 600))
    before = int(time.time())
    assert run(GL_STORE=kind).stdout.startswith(b"HX-Greylist: delayed 6")
    after = int(time.time())
    entries = stored(gl_dir, kind)
    # first kept, last and passed now, tries (refused) kept.
    first_now, last, passed, tries = map(int, entries[KEY].split())
    assert (first_now, tries) == (first - 600, 2) and before - STEP <= last == passed <= after + STEP, \
        entries
    # And the client's auto-whitelist entry (GL_AWL_UNIT=address).
    assert sorted(entries) == [KEY, "client 198.51.100.7"], entries
    before = int(time.time())
    assert run(GL_STORE=kind).stdout.startswith(b"HX-Greylist: passed (known sender)")
    after = int(time.time())
    first_now, last_now, passed_now, tries = map(int, stored(gl_dir, kind)[KEY].split())
    assert (first_now, passed_now, tries) == (first - 600, passed, 2)
    assert before - STEP <= last_now <= after + STEP
    assert get_entry(gl_dir, kind, "nobody * *") is None


@pytest.mark.parametrize("kind", kind_params())  # a kind this Python lacks: a listed skip
def test_update_deletes_and_keeps(gl_dir, kind):
    set_entry(gl_dir, kind, "a * *", Entry(1, 2, 3, 4))
    assert stored(gl_dir, kind) == {"a * *": b"1 2 3 4"}
    set_entry(gl_dir, kind, "b * *", Entry(5, 6, 0, 1))
    set_entry(gl_dir, kind, "a * *", None)
    assert stored(gl_dir, kind) == {"b * *": b"5 6 0 1"}
    # And what the database's own module wrote is read back as written.
    store_raw(gl_dir, kind, "c * *", b"7 8 9 10")
    assert get_entry(gl_dir, kind, "c * *") == Entry(7, 8, 9, 10)
    assert get_entry(gl_dir, kind, "a * *") is None


def test_lookup_on_an_empty_directory_creates_nothing(gl_dir):
    for kind in KINDS:
        assert get_entry(gl_dir, kind, KEY) is None
    assert set(os.listdir(gl_dir)) <= {"lock"}  # SQLite reads take no flock


def test_dbm_dumb_is_never_used(run, gl_dir):
    code = ("import sys; sys.modules['dbm.gnu'] = sys.modules['dbm.ndbm'] = sys.modules['dbm.sqlite3'] = None\n"
            "from qgrey.store.dbm import module\n"
            "from qgrey.store import StoreError\n"
            "try:\n    module('dbm')\nexcept StoreError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == ("GL_STORE=dbm: this Python has not any of dbm.gnu, dbm.ndbm, "
                                  "dbm.sqlite3 (dbm.dumb is not safe enough); use GL_STORE=sqlite")


def test_sqlite_reader_agrees_with_sqlite_on_a_large_tree(gl_dir):
    """Thousands of keys: interior pages, both directions of the search."""
    import sqlite3
    from qgrey.store import sqlitefile
    from qgrey.store.sqlite import SCHEMA
    path = os.path.join(gl_dir, "qgrey.sqlite")
    keys = ["10.%d.%d.0/24 sender%d@example.org rcpt%d@example.net" % (i % 256, i // 256, i * 7, i)
            for i in range(20000)]
    with sqlite3.connect(path) as c:
        c.execute(SCHEMA)
        c.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
                      [(k, i, i + 1, i * 2, 1 << (i % 60)) for i, k in enumerate(keys)])
    for i in list(range(0, 20000, 97)) + [19999]:
        row = sqlitefile.lookup(path, b"entries", keys[i].encode())
        assert row == [keys[i].encode(), i, i + 1, i * 2, 1 << (i % 60)]
    for missing in ["", "0", "10.0.0.0/24", "zzz", keys[5] + "x", keys[5][:-1]]:
        assert sqlitefile.lookup(path, b"entries", missing.encode()) is None
