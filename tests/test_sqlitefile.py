"""The direct reader of qgrey's SQLite file (qgrey.store.sqlitefile) against SQLite.

The reader answers a lookup only when its answer is SQLite's:
    SELECT key, first, last, passed, tries FROM entries WHERE key = ?
and otherwise declines (Unsupported, or OSError), so that the store asks
SQLite itself. No other exception may leave it. Every test here looks the
same keys up with the reader and with the sqlite3 module, and compares:

1. schema shapes other than qgrey's are declined, qgrey's own (or none) is answered;
2. the same files through SqliteStore and through the installed plugin;
3. keys on overflow pages, at page sizes 512 to 65536: answered, and right;
4. damaged files, at random (hypothesis) and in targeted ways: SQLite's
   answer or a decline, never an answer where SQLite reports corruption.
"""
import collections
import itertools
import os
import random
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from qgrey.record import Entry
from qgrey.store import StoreError
from qgrey.store import sqlitefile
from qgrey.store.sqlite import SCHEMA, SqliteStore
from qgrey.store.sqlitefile import STORED_SCHEMA, Unsupported
from test_hostile import check, key as triplet_key

SELECT = "SELECT key, first, last, passed, tries FROM entries WHERE key = ?"
TABLE = b"entries"
DECLINED = (Unsupported, OSError)
QGREY_SQL = STORED_SCHEMA[TABLE].decode()
COLUMNS = ("key TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL, "
           "passed INTEGER NOT NULL, tries INTEGER NOT NULL")
assert QGREY_SQL == "CREATE TABLE entries (%s) WITHOUT ROWID" % COLUMNS


# --- the two sides ------------------------------------------------------------

def sqlite_answers(path, keys):
    """SQLite's answer for each key: [key bytes, first, last, passed, tries],
    None, or the error it reported (sqlite3.DatabaseError). "no such table" is None, as
    the store takes it."""
    db = sqlite3.connect(path)
    db.text_factory = bytes  # a damaged file may hold text that is not UTF-8
    answers = []
    try:
        for key in keys:
            try:
                row = db.execute(SELECT, (key,)).fetchone()
            except sqlite3.DatabaseError as err:
                answers.append(None if "no such table" in str(err) else err)
            except UnicodeDecodeError as err:  # SQLite's error message names a damaged schema
                answers.append(sqlite3.DatabaseError("an error whose message is not UTF-8: %s" % err))
            else:
                answers.append(None if row is None else list(row))
    finally:
        db.close()
    return answers


class Stray(Exception):
    """An exception other than Unsupported or OSError left the reader."""


def reader_answer(path, keys):
    """The reader's rows for keys in one request, or the exception it declined with."""
    try:
        return sqlitefile.lookup_many(path, TABLE, [k.encode() for k in keys], None)
    except DECLINED as err:
        return err
    except Exception as err:
        raise Stray("the reader raised %r for %r" % (err, [k[:80] for k in keys])) from err


def same(got, want):
    """Equal, value types included (1.0 is not 1, b'1' is not 1)."""
    if got is None or want is None:
        return got is None and want is None
    return (isinstance(got, list) and isinstance(want, list) and got == want
            and [type(v) for v in got] == [type(v) for v in want])


def short(value, width=300):
    text = repr(value)
    return text if len(text) <= width else text[:width] + "...(%d chars)" % len(text)


class Outcome:
    def __init__(self):
        self.answered, self.declined, self.sqlite_errors = [], [], []
        self.request_declined = None


def differential(path, keys, context="", problems=None):
    """Each key alone, then all keys in one request, against SQLite: the
    reader declines or gives SQLite's answer; where SQLite reports an error,
    it declines. A disagreement fails at once, or is added to problems (a
    list) when one is given. -> Outcome (keys answered and declined alone)."""
    def complain(message):
        message = "%s\n  %s" % (context, message)
        if problems is None:
            raise AssertionError(message)
        problems.append(message)

    expected = sqlite_answers(path, keys)
    outcome = Outcome()
    for key, want in zip(keys, expected):
        if isinstance(want, Exception):
            outcome.sqlite_errors.append(key)
        try:
            got = reader_answer(path, [key])
        except Stray as err:
            complain(str(err))
            continue
        if isinstance(got, Exception):
            outcome.declined.append(key)
            continue
        outcome.answered.append(key)
        got = got[0]
        if isinstance(want, Exception):
            complain("key %s: the reader answered %s where SQLite says %r"
                     % (short(key), short(got), want))
        elif not same(got, want):
            complain("key %s: the reader answered %s, SQLite %s"
                     % (short(key), short(got), short(want)))
    try:
        rows = reader_answer(path, keys)
    except Stray as err:
        complain(str(err))
        rows = err
    outcome.request_declined = isinstance(rows, Exception)
    if not outcome.request_declined:
        if outcome.sqlite_errors:
            complain("one request answered where SQLite reports an error for %s"
                     % short(outcome.sqlite_errors[0]))
        for key, got, want in zip(keys, rows, expected):
            if not isinstance(want, Exception) and not same(got, want):
                complain("key %s in one request: the reader answered %s, SQLite %s"
                         % (short(key), short(got), short(want)))
    return outcome


# --- rows and keys --------------------------------------------------------------

# Every size of integer the record format has (constants 0 and 1, 1 to 8 bytes), signs included.
VALUES = [0, 1, 2, -1, 127, 128, -129, 255, 32767, -32768, 32768, 2 ** 23, -2 ** 23 - 1,
          2 ** 31 - 1, -2 ** 31, 2 ** 40, 2 ** 47 - 1, -2 ** 47, 2 ** 48, 2 ** 63 - 1, -2 ** 63,
          1700000000]
SPP_KEY = triplet_key("alice@example.org")  # the triplet of conftest.SPP_ENV


def make_keys(count, seed):
    rng = random.Random(seed)
    keys = [SPP_KEY]
    while len(keys) < count:
        i = len(keys)
        client = "198.51.%d.0/24" % rng.randrange(256)
        if i % 7 == 0:
            client = "2001:db8:%x::/64" % rng.randrange(65536)
        sender = "s%d.%s@example.org" % (i, "".join(rng.choice("abcxyz") for _ in range(rng.randrange(12))))
        recipient = rng.choice(["bob", "%C3%A9l%C3%A8ve", "post.master", "r%d" % i]) + "@example.net"
        if i % 11 == 0:
            sender = "<>"
        keys.append(" ".join((client, sender, recipient)))
    return keys


def make_rows(keys):
    return [(k, 1700000000 + i, VALUES[i % len(VALUES)], VALUES[(i * 7 + 3) % len(VALUES)], i % 3)
            for i, k in enumerate(keys)]


def absent_variants(keys):
    """Keys near the stored ones that are not stored: longer, shorter, upper case,
    trailing spaces, a byte after or before."""
    present = set(keys)
    out = ["", " ", "0", "~", "\x7f", "é", keys[0][:1]]
    for k in keys[::9]:
        out += [k + "x", k[:-1], k.upper(), k + "  ", k[:-1] + chr(ord(k[-1]) + 1),
                k[:-1] + chr(ord(k[-1]) - 1), k + "\x00"]
    seen, result = set(), []
    for k in out:
        if k not in present and k not in seen:
            seen.add(k)
            result.append(k)
    return result


KEYS = make_keys(300, 1)
ROWS = make_rows(KEYS)
LOOKUPS = KEYS + absent_variants(KEYS)


# --- schema shapes ---------------------------------------------------------------

def connect(path, page_size=None, auto_vacuum=True, encoding=None):
    db = sqlite3.connect(path, isolation_level=None)
    if page_size:
        db.execute("PRAGMA page_size=%d" % page_size)
    if auto_vacuum:
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # as SqliteStore creates the file
    if encoding:
        db.execute("PRAGMA encoding='%s'" % encoding)
    return db


def fill(db, rows=ROWS, table="entries", columns="key, first, last, passed, tries"):
    db.execute("BEGIN")
    db.executemany("INSERT INTO %s (%s) VALUES (?, ?, ?, ?, ?)" % (table, columns), rows)
    db.execute("COMMIT")


def create(path, sql, rows=ROWS, **options):
    db = connect(path, **options)
    db.execute(sql)
    fill(db, rows)
    return db


def qgrey_file(path, rows=ROWS, **options):
    create(path, SCHEMA, rows, **options).close()


def edit_schema(path, assignment, *args):
    """sqlite_master edited as SQLite's documentation describes: writable_schema,
    and a new schema_version so that other connections read it again."""
    db = sqlite3.connect(path, isolation_level=None)
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET %s WHERE name = 'entries'" % assignment, args)
    db.execute("PRAGMA schema_version=%d" % (version + 1))
    db.execute("PRAGMA writable_schema=OFF")
    db.close()


def root_of(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT rootpage, (SELECT page_count FROM pragma_page_count()) "
                          "FROM sqlite_master WHERE name = 'entries'").fetchone()
    finally:
        db.close()


class Expect:
    """What the reader must do with a shape: answer every lookup directly
    ("answer"), decline every one ("decline"), or decline the keys listed
    (and otherwise only agree with SQLite). none: every answer is None."""

    def __init__(self, mode, keys=(), none=False, keep=()):
        self.mode, self.keys, self.none, self.keep = mode, set(keys), none, list(keep)


SHAPES = {}


def shape(name):
    def register(build):
        SHAPES[name] = build
        return build
    return register


@shape("qgrey")
def _(path):
    qgrey_file(path)
    return Expect("answer")


@shape("qgrey, no auto_vacuum, 512-byte pages")
def _(path):
    qgrey_file(path, auto_vacuum=False, page_size=512)
    return Expect("answer")


@shape("qgrey, after deletions")
def _(path):
    db = create(path, SCHEMA)
    db.execute("DELETE FROM entries WHERE first % 3 = 0")  # a third: free blocks and free pages
    db.close()
    return Expect("answer")


@shape("qgrey, empty table")
def _(path):
    create(path, SCHEMA, rows=[]).close()
    return Expect("answer", none=True)


@shape("no table left")
def _(path):
    db = create(path, SCHEMA)
    db.execute("DROP TABLE entries")  # the schema empty, the header as qgrey's
    db.close()
    return Expect("answer", none=True)


@shape("unrelated table only")
def _(path):
    """SQLite parses every statement of the schema before any lookup, and
    the reader cannot parse SQL (see the next shapes): any object other than
    qgrey's table is declined, even where SQLite finds no table entries."""
    db = connect(path)
    db.execute("CREATE TABLE other (%s) WITHOUT ROWID" % COLUMNS)
    fill(db, table="other")
    db.close()
    return Expect("decline")


@shape("qgrey's table beside another table")
def _(path):
    db = create(path, SCHEMA)
    db.execute("CREATE TABLE other (a, b)")
    db.close()
    return Expect("decline")


@shape("another table whose statement SQLite cannot parse")
def _(path):
    """The row of the other table well formed, named as its statement names
    it, the statement cut short: SQLite calls the schema malformed."""
    db = create(path, SCHEMA)
    db.execute("CREATE TABLE other (a, b)")
    db.close()
    db = sqlite3.connect(path, isolation_level=None)
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET sql = 'CREATE TABLE other (a, b' WHERE name = 'other'")
    db.execute("PRAGMA schema_version=%d" % (version + 1))
    db.execute("PRAGMA writable_schema=OFF")
    db.close()
    return Expect("decline")


def qgrey_variant(name, sql):
    @shape(name)
    def _(path):
        create(path, sql).close()
        return Expect("decline")


qgrey_variant("key DESC", SCHEMA.replace("PRIMARY KEY", "PRIMARY KEY DESC"))
qgrey_variant("key COLLATE NOCASE", SCHEMA.replace("PRIMARY KEY", "PRIMARY KEY COLLATE NOCASE"))
qgrey_variant("key COLLATE RTRIM", SCHEMA.replace("PRIMARY KEY", "PRIMARY KEY COLLATE RTRIM"))
qgrey_variant("table named ENTRIES", SCHEMA.replace("entries", "ENTRIES"))
qgrey_variant("rowid table", SCHEMA.replace(" WITHOUT ROWID", ""))
qgrey_variant("composite key (key, first)",
              "CREATE TABLE entries (key TEXT, first INTEGER NOT NULL, last INTEGER NOT NULL, "
              "passed INTEGER NOT NULL, tries INTEGER NOT NULL, PRIMARY KEY (key, first)) WITHOUT ROWID")


@shape("columns reordered (tries before passed)")
def _(path):
    db = connect(path)
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, first INTEGER NOT NULL, "
               "last INTEGER NOT NULL, tries INTEGER NOT NULL, passed INTEGER NOT NULL) WITHOUT ROWID")
    fill(db)  # by column name: SQLite's SELECT gives the right values
    db.close()
    return Expect("decline")


@shape("added column")
def _(path):
    db = create(path, SCHEMA)
    db.execute("ALTER TABLE entries ADD COLUMN note TEXT")
    db.execute("UPDATE entries SET note = 'n' WHERE first % 2 = 0")
    db.close()
    return Expect("decline")


@shape("dropped column, one of two added left")
def _(path):
    db = connect(path)
    db.execute("CREATE TABLE entries (%s, note TEXT, other TEXT) WITHOUT ROWID" % COLUMNS)
    fill(db)
    db.execute("UPDATE entries SET note = 'n', other = 'o'")
    db.execute("ALTER TABLE entries DROP COLUMN note")
    db.close()
    return Expect("decline")


@shape("dropped column, back to qgrey's table")
def _(path):
    """DROP COLUMN rewrites the statement and every row: what is left is
    exactly qgrey's table, which the reader may answer (and must get right)."""
    db = connect(path)
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, note TEXT, first INTEGER NOT NULL, "
               "last INTEGER NOT NULL, passed INTEGER NOT NULL, tries INTEGER NOT NULL) WITHOUT ROWID")
    fill(db)
    db.execute("UPDATE entries SET note = 'a note that the rows must lose'")
    db.execute("ALTER TABLE entries DROP COLUMN note")
    assert db.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()[0] == QGREY_SQL
    db.close()
    return Expect("agree")


@shape("view named entries")
def _(path):
    db = connect(path)
    db.execute("CREATE TABLE stored (%s) WITHOUT ROWID" % COLUMNS)
    fill(db, table="stored")
    db.execute("CREATE VIEW entries AS SELECT key, first, last, passed, tries FROM stored")
    db.close()
    return Expect("decline")


@shape("index named entries")
def _(path):
    db = connect(path)
    db.execute("CREATE TABLE stored (%s) WITHOUT ROWID" % COLUMNS)
    fill(db, table="stored")
    db.execute("CREATE INDEX entries ON stored (key)")
    db.close()
    return Expect("decline")


@shape("UTF-16 file")
def _(path):
    create(path, SCHEMA, encoding="UTF-16le").close()
    return Expect("decline")


def root_edit(name, value):
    @shape(name)
    def _(path):
        qgrey_file(path)
        root, pages = root_of(path)
        edit_schema(path, "rootpage = %s" % value.format(root=root, pages=pages))
        return Expect("decline")


root_edit("root page NULL", "NULL")
root_edit("root page 0", "0")
root_edit("root page 1", "1")
root_edit("root page beyond the file", "{pages} + 5")
root_edit("root page as a blob", "CAST('{root}' AS BLOB)")


@shape("root page as text")
def _(path):
    """The root page stored as the text '3' (the true root), which SQLite
    reads as 3. sqlite_master's INTEGER affinity turns an UPDATE to '3' into
    the integer 3, so the value is written as a blob and its serial type is
    then changed from blob to text of the same length in page 1."""
    qgrey_file(path)
    root, _ = root_of(path)
    text = str(root).encode()
    edit_schema(path, "rootpage = CAST(? AS BLOB)", text)
    with open(path, "r+b") as f:
        page = f.read(4096)
        # The record header: 'table', 'entries', 'entries', then the blob.
        header = bytes([13 + 2 * 5, 13 + 2 * 7, 13 + 2 * 7, 12 + 2 * len(text)])
        at = page.index(header)
        assert page.count(header) == 1
        f.seek(at + 3)
        f.write(bytes([13 + 2 * len(text)]))
    db = sqlite3.connect(path)
    stored = db.execute("SELECT typeof(rootpage), rootpage FROM sqlite_master").fetchone()
    assert stored == ("text", text.decode()), stored
    db.close()
    return Expect("decline")


ODD_KEYS = {"text": KEYS[5], "blob": KEYS[6], "real": KEYS[7], "null": KEYS[8]}


@shape("text in an integer column")
def _(path):
    db = create(path, SCHEMA)
    db.execute("UPDATE entries SET first = 'abc' WHERE key = ?", (ODD_KEYS["text"],))
    db.execute("UPDATE entries SET passed = '12x' WHERE key = ?", (KEYS[9],))
    db.close()
    return Expect("some", [ODD_KEYS["text"], KEYS[9]])


@shape("blob in an integer column")
def _(path):
    db = create(path, SCHEMA)
    db.execute("UPDATE entries SET last = x'01' WHERE key = ?", (ODD_KEYS["blob"],))
    db.close()
    return Expect("some", [ODD_KEYS["blob"]])


@shape("real in an integer column")
def _(path):
    db = create(path, SCHEMA)
    db.execute("UPDATE entries SET tries = 1.5 WHERE key = ?", (ODD_KEYS["real"],))
    db.close()
    return Expect("some", [ODD_KEYS["real"]])


@shape("NULL in a column, table without NOT NULL")
def _(path):
    db = create(path, SCHEMA.replace(" NOT NULL", ""))
    db.execute("UPDATE entries SET passed = NULL WHERE key = ?", (ODD_KEYS["null"],))
    db.close()
    return Expect("decline")


@shape("NULL in a column under qgrey's statement")
def _(path):
    """The same file with qgrey's CREATE statement put in sqlite_master: the
    schema is qgrey's, one row is not."""
    db = create(path, SCHEMA.replace(" NOT NULL", ""))
    db.execute("UPDATE entries SET passed = NULL WHERE key = ?", (ODD_KEYS["null"],))
    db.close()
    edit_schema(path, "sql = ?", QGREY_SQL)
    return Expect("some", [ODD_KEYS["null"]])


@shape("rows of four columns under qgrey's statement")
def _(path):
    """Rows written before a fifth column existed: SQLite gives NULL for tries."""
    db = connect(path)
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, first INTEGER NOT NULL, "
               "last INTEGER NOT NULL, passed INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("BEGIN")
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", [r[:4] for r in ROWS])
    db.execute("COMMIT")
    db.close()
    edit_schema(path, "sql = ?", QGREY_SQL)
    return Expect("some", KEYS)


@shape("rows of six columns under qgrey's statement")
def _(path):
    db = connect(path)
    db.execute("CREATE TABLE entries (%s, note TEXT) WITHOUT ROWID" % COLUMNS)
    fill(db)
    db.execute("UPDATE entries SET note = 'n'")
    db.close()
    edit_schema(path, "sql = ?", QGREY_SQL)
    return Expect("agree")


@shape("WAL mode")
def _(path):
    db = connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    fill(db)
    db.close()  # checkpointed: no -wal file, the header still says WAL
    assert not os.path.exists(path + "-wal")
    return Expect("decline")


@shape("WAL mode, rows in the -wal file")
def _(path):
    db = connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(SCHEMA)
    fill(db)
    assert os.path.getsize(path + "-wal") > 0
    return Expect("decline", keep=[db])  # stays open: the rows stay in the -wal file


@pytest.fixture
def built():
    """build(name, path) -> Expect; what a shape keeps open is closed afterwards."""
    kept = []

    def build(name, path):
        expect = SHAPES[name](path)
        kept.extend(expect.keep)
        return expect
    yield build
    for db in kept:
        db.close()


@pytest.mark.parametrize("name", list(SHAPES))
def test_shape(tmp_path, built, name):
    path = str(tmp_path / "qgrey.sqlite")
    expect = built(name, path)
    outcome = differential(path, LOOKUPS, context="shape: %s" % name)
    if expect.mode == "answer":
        assert not outcome.declined, "%s: declined %s" % (name, short(outcome.declined[0]))
        assert not outcome.request_declined, name
        rows = sqlitefile.lookup_many(path, TABLE, [k.encode() for k in LOOKUPS])
        found = sum(1 for row in rows if row is not None)
        assert found == 0 if expect.none else found >= len(KEYS) // 2, (name, found)
    elif expect.mode == "decline":
        assert not outcome.answered, "%s: answered %s" % (name, short(outcome.answered[0]))
        assert outcome.request_declined, name
    elif expect.mode == "some":
        answered = expect.keys.intersection(outcome.answered)
        assert not answered, "%s: answered %s" % (name, short(sorted(answered)[0]))
        assert outcome.request_declined, name


# --- through the store and the plugin ----------------------------------------------

def store_expected(path, keys):
    """SqliteStore's answer from SQLite itself: an Entry, None, or an error."""
    db = sqlite3.connect(path)
    out = []
    try:
        for key in keys:
            try:
                row = None if key is None else db.execute(
                    "SELECT first, last, passed, tries FROM entries WHERE key = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as err:
                out.append(None if "no such table" in str(err) else err)
            else:
                out.append(None if row is None else Entry(*row))
    finally:
        db.close()
    return out


STORE_SHAPES = ["columns reordered (tries before passed)", "root page as text", "qgrey"]


@pytest.mark.parametrize("name", STORE_SHAPES + [n for n in SHAPES if n not in STORE_SHAPES])
def test_store_answers_what_sqlite_says(gl_dir, built, name):
    path = os.path.join(gl_dir, SqliteStore.file_name)
    built(name, path)
    keys = LOOKUPS[:200] + LOOKUPS[-60:]
    expected = store_expected(path, keys)
    for start in range(0, len(keys), 3):  # as the plugin asks: a few keys, one of them None
        batch = keys[start:start + 3] + [None]
        want = expected[start:start + 3] + [None]
        try:
            got = SqliteStore(gl_dir, 3).lookup_many(batch)
        except StoreError as err:
            assert any(isinstance(w, Exception) for w in want), (
                "%s: StoreError %r where SQLite answers %r" % (name, err, want))
            continue
        assert not any(isinstance(w, Exception) for w in want), (
            "%s: %r for %r where SQLite reports %r" % (name, got, batch, want))
        assert got == want, "%s: keys %r: the store gave %r, SQLite %r" % (name, batch, got, want)
        for entry, w in zip(got, want):
            assert entry is None or (type(entry) is Entry and [type(v) for v in entry.fields()]
                                     == [type(v) for v in w.fields()]), (name, entry, w)


@pytest.mark.parametrize("name", STORE_SHAPES[:2])
def test_plugin_on_a_foreign_shape(run, gl_dir, built, name):
    built(name, os.path.join(gl_dir, SqliteStore.file_name))
    line = check(run(GL_ON_ERROR="defer"))
    assert b"reason=internal" not in line, line


# --- overflow pages --------------------------------------------------------------------

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.-@%" + "éüß日本語🙂"


def text_of(rng, nbytes, alphabet=ALPHABET):
    """A string of exactly nbytes UTF-8 bytes: a random slice of a random
    text (cheaper than a character at a time)."""
    pool = _POOLS.get(alphabet)
    if pool is None:
        pool = _POOLS[alphabet] = "".join(random.Random(0).choices(alphabet, k=1 << 16)).encode()
    start = rng.randrange(len(pool) - nbytes)
    text = pool[start:start + nbytes].decode("utf-8", "ignore")  # cut characters dropped
    return text + "x" * (nbytes - len(text.encode()))


_POOLS = {}


def varint_size(value):
    return 1 if value < 0x80 else 2 if value < 0x4000 else 3 if value < 0x200000 else 4


def int_size(value):
    if value in (0, 1):
        return 0
    for size in (1, 2, 3, 4, 6, 8):
        if -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
            return size


def payload_size(key_bytes, values):
    """The size of the record of a row (SQLite's record format)."""
    header = varint_size(13 + 2 * key_bytes) + len(values)
    header += varint_size(header + 1)
    return header + key_bytes + sum(int_size(v) for v in values)


def overflow_rows(page_size, count=3000):
    """Short keys, keys of 1,000 to 20,000 bytes, groups sharing long prefixes,
    and keys whose records sit at the edges of the local part of a cell."""
    rng = random.Random(page_size)
    values = (1700000000, 1700003600, 0, 1)
    keys = []
    prefixes = [text_of(rng, rng.randrange(900, 16000)) for _ in range(12)]
    usable = page_size
    most = (usable - 12) * 64 // 255 - 23
    least = (usable - 12) * 32 // 255 - 23
    edges = set()
    for target in range(most - 6, most + 7):  # largest record wholly in the cell, and one more
        edges.add(target)
    k = 1
    while most + k * (usable - 4) <= 20100:  # where the local part jumps from most to least
        for d in range(-3, 4):
            edges.add(most + k * (usable - 4) + d)
        k += 1
    for target in sorted(edges):
        for n in range(max(1, target - 30), target + 1):
            if payload_size(n, values) == target:
                keys.append("edge%06d " % target + text_of(rng, n - 11, "abc"))
                break
    assert least < most
    edge_keys = len(keys)
    while len(keys) < count:
        i = len(keys)
        kind = i % 5
        if kind == 0:
            keys.append("198.51.100.0/24 s%d@example.org r@example.net" % i)
        elif kind == 1:
            keys.append("long%d " % i + text_of(rng, rng.randrange(1000, 20000)))
        elif kind == 2:  # long shared prefix, differing at the end or soon after it
            keys.append(rng.choice(prefixes) + rng.choice(["", "a", "b", "/", "é"])
                        + text_of(rng, rng.randrange(0, 3000)))
        elif kind == 3:
            keys.append(text_of(rng, rng.randrange(1, 60)))
        else:
            keys.append(rng.choice(prefixes) + "%d" % i)
    keys = list(dict.fromkeys(keys))
    rows = [(k,) + (values if i < edge_keys else values[:2] + (i % 2, i)) for i, k in enumerate(keys)]
    absent = ([p for p in prefixes if p not in set(keys)] + [k + "a" for k in keys[::37]]
              + [k[:-1] for k in keys[::41]] + [k[:len(k) // 2] for k in keys[::43]]
              + [k[:-1] + ("b" if k[-1] != "b" else "c") for k in keys[::47]]
              + [p + "zz" for p in prefixes])
    present = set(keys)
    return rows, [k for k in dict.fromkeys(absent) if k not in present]


@pytest.mark.parametrize("page_size", [512, 1024, 4096, 65536])
def test_overflow_pages(tmp_path, page_size):
    rows, absent = overflow_rows(page_size)
    path = str(tmp_path / "qgrey.sqlite")
    qgrey_file(path, rows, page_size=page_size)
    sizes = [len(r[0].encode()) for r in rows]
    assert sum(1 for s in sizes if s >= 1000) > 1000 and max(sizes) > 19000
    assert sum(1 for s in sizes if s < 100) > 500
    most = (page_size - 12) * 64 // 255 - 23
    assert sum(1 for s in sizes if s > most) > 50  # overflow pages at every page size
    keys = [r[0] for r in rows] + absent
    outcome = differential(path, keys, context="page size %d" % page_size)
    assert not outcome.declined, "declined %s" % short(outcome.declined[0])
    assert not outcome.request_declined
    assert outcome.answered == keys
    found = sqlitefile.lookup_many(path, TABLE, [k.encode() for k in keys])
    assert sum(1 for row in found if row is not None) == len(rows)


# --- damaged files ----------------------------------------------------------------------

BASE_PAGE = 1024


class Base:
    """One qgrey database (1024-byte pages, a tree three levels deep, some
    keys on overflow pages, free space from deleted rows) and what the
    mutations aim at."""

    def __init__(self, directory):
        rng = random.Random(7)
        keys = make_keys(420, 7)
        for i in range(3, len(keys), 17):
            keys[i] += " " + text_of(rng, rng.randrange(1000, 4000))
        path = os.path.join(directory, "base.sqlite")
        db = create(path, SCHEMA, make_rows(keys), page_size=BASE_PAGE)
        deleted = keys[2::9]
        db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in deleted])
        db.close()
        with open(path, "rb") as f:
            self.data = f.read()
        self.pages = len(self.data) // BASE_PAGE
        self.keys = keys + [k for k in absent_variants(keys)[:60]]
        self.deleted = deleted
        # the pages of the table's tree: (page number, cell pointer array offset, cells)
        self.btree = []
        todo, depth = [(self._root(), 1)], 0
        while todo:
            number, level = todo.pop()
            depth = max(depth, level)
            start = (number - 1) * BASE_PAGE
            kind = self.data[start]
            count = int.from_bytes(self.data[start + 3:start + 5], "big")
            array = start + (12 if kind == 2 else 8)
            self.btree.append((number, array, count))
            if kind == 2:
                cells = [int.from_bytes(self.data[array + 2 * i:array + 2 * i + 2], "big")
                         for i in range(count)]
                children = [int.from_bytes(self.data[start + c:start + c + 4], "big") for c in cells]
                children.append(int.from_bytes(self.data[start + 8:start + 12], "big"))
                todo.extend((child, level + 1) for child in children)
            else:
                assert kind == 10, kind
        assert depth >= 3, depth
        # where stored keys begin in the tree's pages (record header just before)
        tree = {number for number, _, _ in self.btree}
        self.spans = []
        for k in keys:
            raw = k.encode()[:200]
            at = self.data.find(raw)
            while at > 0 and at // BASE_PAGE + 1 not in tree:
                at = self.data.find(raw, at + 1)
            if at > 0 and k not in deleted:
                self.spans.append((at, len(raw)))
        schema = self.data.index(b"tableentriesentries")
        self.schema = (schema - 12, self.data.index(b"WITHOUT ROWID", schema) + 13)

    def _root(self):
        page = self.data[:BASE_PAGE]
        at = page.index(b"tableentriesentries") + len(b"tableentriesentries")
        return page[at]  # a one-byte integer: the root is a low page


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return Base(str(tmp_path_factory.mktemp("base")))


# Header fields: (offset, width).
HEADER_FIELDS = [(16, 2), (18, 1), (19, 1), (20, 1), (21, 1), (22, 1), (23, 1), (24, 4), (28, 4),
                 (32, 4), (36, 4), (40, 4), (44, 4), (48, 4), (52, 4), (56, 4), (60, 4), (64, 4),
                 (68, 4), (72, 4), (92, 4), (96, 4)]
# B-tree page header fields: (offset, width): type, first freeblock, cell count,
# cell content start, fragmented bytes, right child.
PAGE_FIELDS = [(0, 1), (1, 2), (3, 2), (5, 2), (7, 1), (8, 4)]


def mutations(b):
    size, pages = len(b.data), b.pages
    byte = st.integers(0, 255)
    page = st.integers(1, pages)
    field_value = st.one_of(st.integers(0, 2 ** 32 - 1), st.integers(0, pages + 2), st.integers(0, 300))
    btree = st.sampled_from(b.btree)
    return st.one_of(
        st.tuples(st.just("bytes"),
                  st.lists(st.tuples(st.integers(0, size - 1), byte), min_size=1, max_size=8)),
        st.tuples(st.just("bytes in page"), page,
                  st.lists(st.tuples(st.integers(0, BASE_PAGE - 1), byte), min_size=1, max_size=8)),
        st.tuples(st.just("truncate"), st.integers(0, size - 1)),
        st.tuples(st.just("zero page"), page),
        st.tuples(st.just("swap pages"), page, page),
        st.tuples(st.just("header field"), st.sampled_from(HEADER_FIELDS), field_value),
        st.tuples(st.just("page size"), st.sampled_from([512, 2048, 4096, 8192, 16384, 32768, 65536])),
        st.tuples(st.just("page header field"), btree, st.sampled_from(PAGE_FIELDS), field_value),
        st.tuples(st.just("cell pointer"), btree, st.integers(0, 200), st.integers(0, 65535)),
        st.tuples(st.just("swap cells"), btree, st.integers(0, 200), st.integers(0, 200)),
        st.tuples(st.just("key bytes"), st.sampled_from(b.spans),
                  st.lists(st.tuples(st.integers(-8, 199), byte), min_size=1, max_size=4)),
        st.tuples(st.just("schema bytes"),
                  st.lists(st.tuples(st.integers(*b.schema), byte), min_size=1, max_size=4)),
    )


def mutate(b, mutation):
    data = bytearray(b.data)
    kind = mutation[0]
    if kind == "bytes":
        for at, value in mutation[1]:
            data[at] = value
    elif kind == "bytes in page":
        for at, value in mutation[2]:
            data[(mutation[1] - 1) * BASE_PAGE + at] = value
    elif kind == "truncate":
        del data[mutation[1]:]
    elif kind == "zero page":
        start = (mutation[1] - 1) * BASE_PAGE
        data[start:start + BASE_PAGE] = bytes(BASE_PAGE)
    elif kind == "swap pages":
        a, c = [(n - 1) * BASE_PAGE for n in mutation[1:]]
        pa, pc = data[a:a + BASE_PAGE], data[c:c + BASE_PAGE]
        data[a:a + BASE_PAGE], data[c:c + BASE_PAGE] = pc, pa
    elif kind == "header field":
        (at, width), value = mutation[1], mutation[2]
        data[at:at + width] = (value % (1 << 8 * width)).to_bytes(width, "big")
    elif kind == "page size":  # another page size, with the page count that fits the file
        size = mutation[1]
        data[16:18] = (1 if size == 65536 else size).to_bytes(2, "big")
        if len(data) % size == 0:
            data[28:32] = (len(data) // size).to_bytes(4, "big")
    elif kind == "page header field":
        (number, _, _), (at, width), value = mutation[1:]
        start = (number - 1) * BASE_PAGE + at
        data[start:start + width] = (value % (1 << 8 * width)).to_bytes(width, "big")
    elif kind == "cell pointer":
        (_, array, count), index, value = mutation[1:]
        at = array + 2 * (index % count)
        data[at:at + 2] = value.to_bytes(2, "big")
    elif kind == "swap cells":
        (_, array, count), i, j = mutation[1:]
        i, j = array + 2 * (i % count), array + 2 * (j % count)
        data[i:i + 2], data[j:j + 2] = data[j:j + 2], data[i:i + 2]
    elif kind == "key bytes":
        (at, span), changes = mutation[1:]
        for offset, value in changes:
            data[at + offset % span if offset >= 0 else at + offset] = value
    elif kind == "schema bytes":
        for at, value in mutation[1]:
            data[at] = value
    return bytes(data)


def test_the_base_file_is_answered(tmp_path, base):
    path = str(tmp_path / "qgrey.sqlite")
    with open(path, "wb") as f:
        f.write(base.data)
    outcome = differential(path, base.keys, context="undamaged")
    assert not outcome.declined and not outcome.request_declined
    assert len(base.btree) > 30 and len(base.spans) > 300


def test_mutated_files(tmp_path, base):
    """Random damage: SQLite's answer or a decline for every key, and a
    decline wherever SQLite reports the file malformed. Every example runs
    (disagreements are gathered, then reported together with the counts)."""
    counts = collections.Counter()
    names = itertools.count()
    problems = []
    kinds, kinds_disagreeing = collections.Counter(), collections.Counter()

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutation=mutations(base))
    def damaged(mutation):
        path = str(tmp_path / ("m%d.sqlite" % next(names)))
        with open(path, "wb") as f:
            f.write(mutate(base, mutation))
        found = []
        try:
            outcome = differential(path, base.keys, "mutation: %r" % (mutation,), found)
        finally:
            for suffix in ("", "-journal", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
        counts["files"] += 1
        counts["files answered"] += bool(outcome.answered)
        counts["files disagreeing"] += bool(found)
        counts["answered"] += len(outcome.answered)
        counts["declined"] += len(outcome.declined)
        counts["sqlite errors"] += len(outcome.sqlite_errors)
        counts["requests declined"] += outcome.request_declined
        counts["disagreements"] += len(found)
        problems.extend(found[:3])
        kinds[mutation[0]] += 1
        kinds_disagreeing[mutation[0]] += bool(found)

    damaged()
    lookups = counts["answered"] + counts["declined"]
    print("\nmutated files: %(files)d, with a direct answer: %(files answered)d, with a "
          "disagreement: %(files disagreeing)d; lookups answered directly: %(answered)d, "
          "declined: %(declined)d (SQLite reported an error: %(sqlite errors)d); "
          "disagreements: %(disagreements)d; one-request lookups declined: "
          "%(requests declined)d" % counts)
    print("files with a disagreement, by mutation: %s" % ", ".join(
        "%s %d/%d" % (kind, kinds_disagreeing[kind], kinds[kind]) for kind in sorted(kinds)))
    for problem in problems[:20]:
        print(problem)
    assert not problems, "%d disagreements in %d of %d files, the first:\n%s" % (
        counts["disagreements"], counts["files disagreeing"], counts["files"],
        "\n".join(problems[:10]))
    assert counts["files"] >= 250
    assert counts["answered"] >= 0.25 * lookups, counts
    assert counts["files answered"] >= 0.25 * counts["files"], counts


# Damage found to be answered differently from SQLite, kept as named cases.
def _schema_name(b):
    data = bytearray(b.data)
    at = data.index(b"tableentriesentries") + len(b"table") + 6
    data[at] = ord("z")  # sqlite_master.name 'entries' -> 'entriez'; sql unchanged
    return bytes(data)


def _serial_type(value):
    def damage(b):
        data = bytearray(b.data)
        at, _ = b.spans[10]
        header = data[at - 6:at]  # size, key serial, four integer serials
        assert header[0] == 6 and header[2] == 4, header
        data[at - 4] = value  # the serial type of first
        return bytes(data)
    return damage


def _swap_first_and_last_cells(b):
    data = bytearray(b.data)
    for number, array, count in b.btree:
        if data[(number - 1) * BASE_PAGE] == 10 and count >= 6:
            i, j = array, array + 2 * (count - 1)
            data[i:i + 2], data[j:j + 2] = data[j:j + 2], data[i:i + 2]
    return bytes(data)


def _empty_leaf(b):
    data = bytearray(b.data)
    for number, _, count in b.btree:
        start = (number - 1) * BASE_PAGE
        if data[start] == 10:
            data[start + 3:start + 5] = b"\0\0"
            return bytes(data)


def _zero_left_children(b):
    """Zero the left child of the first cell of the interior pages just above the leaves."""
    data = bytearray(b.data)
    for number, array, count in b.btree:
        start = (number - 1) * BASE_PAGE
        if data[start] == 2:
            cell = int.from_bytes(data[array:array + 2], "big")
            child = int.from_bytes(data[start + cell:start + cell + 4], "big")
            if data[(child - 1) * BASE_PAGE] == 10:
                data[(child - 1) * BASE_PAGE:child * BASE_PAGE] = bytes(BASE_PAGE)
    return bytes(data)


def _child_back_to_the_root(b):
    """The right child of the interior pages below the root: the root (a cycle)."""
    data = bytearray(b.data)
    root = b.btree[0][0]
    for number, _, _ in b.btree[1:]:
        start = (number - 1) * BASE_PAGE
        if data[start] == 2:
            data[start + 8:start + 12] = root.to_bytes(4, "big")
    return bytes(data)


def _too_many_cells(b):
    """A leaf claiming one cell more than SQLite allows a page (MX_CELL), the
    pointers beyond its own repeating its last one."""
    data = bytearray(b.data)
    for number, array, count in b.btree:
        start = (number - 1) * BASE_PAGE
        if data[start] == 10:
            most = (BASE_PAGE - 8) // 6
            last = data[array + 2 * (count - 1):array + 2 * count]
            data[array + 2 * count:array + 2 * (most + 1)] = last * (most + 1 - count)
            data[start + 3:start + 5] = (most + 1).to_bytes(2, "big")
            data[start + 5:start + 7] = (array - start + 2 * (most + 1)).to_bytes(2, "big")
    return bytes(data)


DAMAGE = {
    "sqlite_master name entries -> entriez": _schema_name,
    "right children of interior pages back to the root": _child_back_to_the_root,
    "more cells on a leaf than SQLite allows": _too_many_cells,
    "serial type of first: 4-byte integer -> constant 0": _serial_type(8),
    "serial type of first: 4-byte integer -> 3-byte integer": _serial_type(3),
    "first and last cells of every leaf swapped": _swap_first_and_last_cells,
    "a leaf with no cells": _empty_leaf,
    "left children of interior cells zeroed": _zero_left_children,
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_targeted_damage(tmp_path, base, name):
    path = str(tmp_path / "qgrey.sqlite")
    with open(path, "wb") as f:
        f.write(DAMAGE[name](base))
    differential(path, base.keys, context="damage: %s" % name)
