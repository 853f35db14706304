"""qgrey-expire: remove the entries whose retry window or lifetime is over.

Run from cron as the plugin's user; run as root, it takes the ids of
GL_DIR's owner before it reads anything there. Works in small batches, each one short
hold of the lock, re-checking each entry under the lock before deleting it,
so plugins (and another qgrey-expire) run alongside it. Settings come from
the environment and GL_DIR/config, as for the plugin.

Exit status: 0 done; 100 usage; 111 temporary failure (lock, I/O, database).
"""
import sys
import time

from qgrey import keys, policy, settings as settings_module, tool
from qgrey.store import open_store

PROGRAM = "qgrey-expire"
USAGE = "usage: qgrey-expire [--vacuum]"
BATCH = 500
# At most this many entries deleted per hold of the exclusive lock (one
# commit each), and no more than HOLD_BUDGET seconds of work before the commit.
DELETE_BATCH = 200
HOLD_BUDGET = 0.01
# After each batch, leave the lock to whoever waits for it.
PAUSE = 0.002
# Shrinking rewrites the whole file under the exclusive lock; without
# --vacuum it is done only when worth it and quick.
SHRINK_FREE_SHARE = 0.25
SHRINK_MAX_BYTES = 4 << 20
# A file that can give free pages back in steps (SQLite files qgrey creates)
# does so this many pages per hold of the lock, whatever its size.
RELEASE_PAGES = 128


def kind_removed(key, entry, now, settings):
    """What an expired entry was, for the counts."""
    kind = keys.kind(key)
    if kind in (keys.TRIPLET, keys.BOUNCE):
        return "never-retried" if not entry.passed else "lifetime-over"
    return kind + "-over"


def expire(store, settings, now, batch=BATCH, pause=PAUSE):
    """-> {"never-retried": n, "lifetime-over": n, ..., "kept": n}."""
    counts = {"never-retried": 0, "lifetime-over": 0, "kept": 0}

    def over(key, entry):
        return policy.expired(entry, now, settings, keys.kind(key))

    after = ""
    while True:
        rows = store.scan(after, batch)
        if not rows:
            return counts
        after = rows[-1][0]
        doomed = [key for key, entry in rows if over(key, entry)]
        counts["kept"] += len(rows) - len(doomed)
        while doomed:
            time.sleep(pause)
            removed, done = store.remove_if(doomed[:DELETE_BATCH], over, HOLD_BUDGET)
            counts["kept"] += done - len(removed)
            doomed = doomed[done:]
            for key, entry in removed:
                what = kind_removed(key, entry, now, settings)
                counts[what] = counts.get(what, 0) + 1
        if len(rows) < batch:
            return counts
        time.sleep(pause)


def shrink(store, removed, force):
    """Shrink the file when worth it -> one line saying what was done."""
    def measure(s):
        return s._space()
    if removed + store.kept == 0:
        return "shrink: not needed (no entries)"
    size, free = store.maintain(measure, exclusive=False)
    if free and not force:
        started, released = time.monotonic(), 0
        while True:
            time.sleep(PAUSE)
            step = store.maintain(lambda s: s._release(RELEASE_PAGES))
            if not step:
                break
            released += step
        if released or step is not None:
            after, _ = store.maintain(measure, exclusive=False)
            return "shrink: %d KiB -> %d KiB in steps of %d pages, %.2f s" % (
                size >> 10, after >> 10, RELEASE_PAGES, time.monotonic() - started)
    if free is None:  # dbm: estimate from what this run removed
        share = removed / float(removed + store.kept) if removed + store.kept else 0.0
        what = "about %d%% removed" % (share * 100)
    else:
        share = free / float(size) if size else 0.0
        what = "%d%% free" % (share * 100)
    if not force and share < SHRINK_FREE_SHARE:
        return "shrink: not needed (%s of %d KiB)" % (what, size >> 10)
    if not force and size > SHRINK_MAX_BYTES:
        return ("shrink: skipped (%s of %d KiB; rewriting it would hold the plugin off "
                "for too long; free space is reused; run qgrey-expire --vacuum at a quiet "
                "time to shrink it)" % (what, size >> 10))
    started = time.monotonic()
    done = store.maintain(lambda s: s._compact())
    if done is False:
        return "shrink: not possible for this database kind"
    after, _ = store.maintain(measure, exclusive=False)
    return "shrink: %d KiB -> %d KiB in %.2f s" % (size >> 10, after >> 10, time.monotonic() - started)


def run(argv, environ, out):
    if argv not in ([], ["--vacuum"]):
        sys.stderr.write(USAGE + "\n")
        return 100
    force = argv == ["--vacuum"]
    tool.become_owner(settings_module.directory(environ))
    settings = settings_module.load(environ)
    for problem in settings.problems:
        sys.stderr.write("%s: warning: %s\n" % (PROGRAM, problem))
    if force:  # a long rewrite: wait for the lock as long as it takes
        settings.lock_timeout = max(settings.lock_timeout, 600)
    started = time.monotonic()
    store = open_store(settings)
    if store.expires_by_itself:
        store.close()
        out.write("nothing to remove: GL_STORE=%s expires entries by itself (each key "
                  "carries the TTL the rules give it)\n" % settings.store)
        return 0
    try:
        counts = expire(store, settings, int(time.time()))
        kept = counts.pop("kept")
        removed = sum(counts.values())
        store.kept = kept
        out.write("removed %d: %s; kept %d; %.2f s\n" % (
            removed, " ".join("%s=%d" % (name, counts[name]) for name in
                              ["never-retried", "lifetime-over"] + sorted(set(counts) - {"never-retried", "lifetime-over"})), kept,
            time.monotonic() - started))
        out.write(shrink(store, removed, force) + "\n")
    finally:
        store.close()
    return 0


def main():
    tool.main(PROGRAM, run)


if __name__ == "__main__":
    main()
