"""qgrey-expire: remove the entries whose retry window or lifetime is over.

Run from cron as the plugin's user. Works in small batches, each one short
hold of the lock, re-checking each entry under the lock before deleting it,
so plugins (and another qgrey-expire) run alongside it. Settings come from
the environment and GL_DIR/config, as for the plugin.

Exit status: 0 done; 100 usage; 111 temporary failure (lock, I/O, database).
"""
import os
import sys
import time

from qgrey import policy, settings as settings_module
from qgrey.store import StoreError, is_triplet, open_store

PROGRAM = "qgrey-expire"
USAGE = "usage: qgrey-expire [--vacuum]"
BATCH = 500
# Entries deleted per hold of the exclusive lock (one commit each).
DELETE_BATCH = 200
# After each batch, leave the lock to whoever waits for it.
PAUSE = 0.002
# Shrinking rewrites the whole file under the exclusive lock; without
# --vacuum it is done only when worth it and quick.
SHRINK_FREE_SHARE = 0.25
SHRINK_MAX_BYTES = 4 << 20


def expire(store, settings, now, batch=BATCH, pause=PAUSE):
    """-> {"never-retried": n, "lifetime-over": n, "kept": n}."""
    counts = {"never-retried": 0, "lifetime-over": 0, "kept": 0}

    def over(entry):
        return policy.expired(entry, now, settings)

    after = ""
    while True:
        rows = store.scan(after, batch)
        if not rows:
            return counts
        after = rows[-1][0]
        doomed = [key for key, entry in rows if is_triplet(key) and over(entry)]
        counts["kept"] += len(rows) - len(doomed)
        for start in range(0, len(doomed), DELETE_BATCH):
            time.sleep(pause)
            chunk = doomed[start:start + DELETE_BATCH]
            removed = store.remove_if(chunk, over)
            counts["kept"] += len(chunk) - len(removed)
            for _, entry in removed:
                if policy.waiting_over(entry, now, settings):
                    counts["never-retried"] += 1
                else:
                    counts["lifetime-over"] += 1
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


def run(argv, environ):
    if argv not in ([], ["--vacuum"]):
        sys.stderr.write(USAGE + "\n")
        return 100
    force = argv == ["--vacuum"]
    settings = settings_module.load(environ)
    for problem in settings.problems:
        sys.stderr.write("%s: warning: %s\n" % (PROGRAM, problem))
    if force:  # a long rewrite: wait for the lock as long as it takes
        settings.lock_timeout = max(settings.lock_timeout, 600)
    started = time.monotonic()
    store = open_store(settings)
    try:
        counts = expire(store, settings, int(time.time()))
        removed = counts["never-retried"] + counts["lifetime-over"]
        store.kept = counts["kept"]
        sys.stdout.write("removed %d: never-retried=%d lifetime-over=%d; kept %d; %.2f s\n" % (
            removed, counts["never-retried"], counts["lifetime-over"], counts["kept"],
            time.monotonic() - started))
        sys.stdout.write(shrink(store, removed, force) + "\n")
    finally:
        store.close()
    return 0


def main():
    os.umask(0o077)
    try:
        status = run(sys.argv[1:], os.environb)
        sys.stdout.flush()
    except StoreError as err:
        sys.stderr.write("%s: fatal: %s\n" % (PROGRAM, err.detail))
        status = 100 if err.reason == "database" else 111
    except KeyboardInterrupt:
        sys.stderr.write("%s: fatal: interrupted\n" % PROGRAM)
        status = 111
    except OSError as err:
        sys.stderr.write("%s: fatal: %s\n" % (PROGRAM, err.strerror or err))
        status = 111
    sys.exit(status)


if __name__ == "__main__":
    main()
