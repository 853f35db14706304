"""Every store kind this Python has, through the installed plugin and directly."""
import importlib
import os
import subprocess
import sys

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


@pytest.mark.parametrize("kind", kind_params())  # a kind this Python lacks: a listed skip
def test_a_whole_cycle(run, gl_dir, kind):
    assert run(GL_STORE=kind).stdout == GREYLISTED
    assert run(GL_STORE=kind).stdout == GREYLISTED
    entry = get_entry(gl_dir, kind, KEY)
    assert (entry.passed, entry.tries) == (0, 2)
    set_entry(gl_dir, kind, KEY, Entry(entry.first - 600, entry.last - 600, 0, 2))
    assert run(GL_STORE=kind).stdout.startswith(b"HX-Greylist: delayed 6")
    assert run(GL_STORE=kind).stdout.startswith(b"HX-Greylist: passed (known sender)")
    assert get_entry(gl_dir, kind, KEY).passed > 0
    assert get_entry(gl_dir, kind, "nobody * *") is None


@pytest.mark.parametrize("kind", kind_params())  # a kind this Python lacks: a listed skip
def test_update_deletes_and_keeps(gl_dir, kind):
    set_entry(gl_dir, kind, "a * *", Entry(1, 2, 3, 4))
    assert get_entry(gl_dir, kind, "a * *") == Entry(1, 2, 3, 4)
    set_entry(gl_dir, kind, "a * *", None)
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
