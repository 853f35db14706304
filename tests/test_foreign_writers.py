"""The direct reader against writers that do not take qgrey's flock (an
administrator's sqlite3 shell, a clean-up script): lookups running all the
while must never disagree with a committed state."""
import os
import random
import sqlite3
import subprocess
import sys
import time

from qgrey.store import sqlitefile

STABLE = 2000
SECONDS = float(os.environ.get("QGREY_FOREIGN_SECONDS", "4"))


def stable_key(i):
    return "10.%d.%d.0/24 sender%d@example.org rcpt%d@example.net" % (i % 250, i // 250, i * 7, i)


# Spills uncommitted pages into the file (tiny cache), then rolls back:
# every stable row has passed=1 in the uncommitted state, never committed.
SPILLER = r"""
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("PRAGMA cache_size=1")
end = time.monotonic() + float(sys.argv[2])
rounds = 0
while time.monotonic() < end:
    c.execute("BEGIN")
    for step in range(5):  # each statement spills pages into the file anew
        c.execute("UPDATE entries SET passed = passed + 1, tries = tries + 1000")
        c.executemany("INSERT INTO entries VALUES (?, 1, 1, 1, 1)",
                      [("%05d spill%d * *" % (i, step),) for i in range(600)])
    c.execute("ROLLBACK")
    rounds += 1
    time.sleep(0.02)  # let the other writer in
print(rounds)
"""

# Commits many inserts between the stable keys (page splits), then deletes
# them again (merges): the stable rows exist in every committed state.
SPLITTER = r"""
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
end = time.monotonic() + float(sys.argv[2])
rounds = 0
while time.monotonic() < end:
    c.execute("BEGIN")
    c.executemany("INSERT INTO entries VALUES (?, 2, 2, 2, 2)",
                  [("10.%d.%d.0/24 sender%d@example.org rcpt%dz" % (i % 250, i // 250, i * 7, i),)
                   for i in range(0, 2000, 2)])
    c.execute("COMMIT")
    c.execute("DELETE FROM entries WHERE first = 2")
    rounds += 1
    time.sleep(0.01)
print(rounds)
"""


def test_lookups_never_see_uncommitted_or_half_written_pages(tmp_path):
    path = str(tmp_path / "qgrey.sqlite")
    with sqlite3.connect(path) as c:
        c.execute(sqlitefile.SCHEMA)
        c.executemany("INSERT INTO entries VALUES (?, ?, ?, 0, ?)",
                      [(stable_key(i), 1000 + i, 2000 + i, 1 + i % 7) for i in range(STABLE)])
    c.close()
    writers = [subprocess.Popen([sys.executable, "-c", code, path, str(SECONDS)],
                                stdout=subprocess.PIPE) for code in (SPILLER, SPLITTER)]
    answered = declined = 0
    wrong = []
    rng = random.Random(7)
    try:
        while any(w.poll() is None for w in writers):
            wanted = rng.sample(range(STABLE), 3)
            try:
                rows = sqlitefile.lookup_many(path, b"entries", [stable_key(i).encode() for i in wanted],
                                              time.monotonic() + 3)
            except (sqlitefile.Unsupported, sqlitefile.Busy):
                declined += 1
                continue
            answered += 1
            for i, row in zip(wanted, rows):
                if row != [stable_key(i).encode(), 1000 + i, 2000 + i, 0, 1 + i % 7]:
                    wrong.append((i, row))
    finally:
        rounds = [int(w.communicate(timeout=60)[0] or 0) for w in writers]
    assert wrong == [], wrong[:5]
    assert all(r > 0 for r in rounds), rounds  # both writers really wrote
    assert answered > 100, (answered, declined)  # and the reader really read
    print("foreign writers: %d spill-and-rollback rounds, %d split-and-merge rounds; "
          "%d lookups answered directly, %d declined to SQLite, 0 wrong" % (
              rounds[0], rounds[1], answered, declined))
