"""Measure qgrey-expire on a large SQLite database while plugins run.

    python3 bench/expire_bench.py DIR [ENTRIES]

Builds DIR/qgrey.sqlite with ENTRIES (default 1,000,000) realistic triplets,
a mix of live and expired ones, then runs qgrey-expire while a loop of
in-process plugin decisions (lookup + update, as the plugin does) records
how long each waited for the lock, and a loop of real plugin runs through
the launcher records their wall time.
"""
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

from qgrey import policy, settings as settings_module
from qgrey.store import Lock, open_store
from qgrey.store.sqlite import SCHEMA

DAY = 86400


def build(directory, count, now):
    path = os.path.join(directory, "qgrey.sqlite")
    if os.path.exists(path):
        os.unlink(path)
    rnd = random.Random(1)
    db = sqlite3.connect(path)
    db.execute(SCHEMA)
    domains = ["example.%s" % tld for tld in ("org", "net", "com", "de", "fr", "nl")]
    expected = {"never-retried": 0, "lifetime-over": 0}

    def rows():
        for i in range(count):
            client = "%d.%d.%d.0/24" % (rnd.randrange(1, 224), rnd.randrange(256), rnd.randrange(256))
            sender = "user%d@%s%d.%s" % (rnd.randrange(10 ** 6), "mail", rnd.randrange(10 ** 4), rnd.choice(domains))
            recipient = "rcpt%d@%s" % (rnd.randrange(5000), domains[i % 3])
            kind = rnd.random()
            if kind < 0.3:    # waiting, window over: never retried
                first = now - rnd.randrange(2 * DAY + 10, 30 * DAY)
                yield ("%s %s %s#%d" % (client, sender, recipient, i), first, first, 0, 1)
                expected["never-retried"] += 1
            elif kind < 0.45:  # passed, lifetime over
                first = now - rnd.randrange(40 * DAY, 90 * DAY)
                yield ("%s %s %s#%d" % (client, sender, recipient, i), first, first + 2 * DAY + 600 * 0, first + 400, 1)
                expected["lifetime-over"] += 1
            elif kind < 0.6:  # waiting, live
                first = now - rnd.randrange(0, 2 * DAY - 10)
                yield ("%s %s %s#%d" % (client, sender, recipient, i), first, first, 0, 1)
            else:             # passed, live
                first = now - rnd.randrange(0, 30 * DAY)
                yield ("%s %s %s#%d" % (client, sender, recipient, i), first, now - rnd.randrange(0, 30 * DAY), first + 400, 2)

    with db:
        db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", rows())
    db.close()
    return expected


class TimedLock(Lock):
    waits = []

    def acquire(self, exclusive):
        started = time.monotonic()
        try:
            Lock.acquire(self, exclusive)
        finally:
            TimedLock.waits.append(time.monotonic() - started)


def decisions(settings, stop, counter):
    import qgrey.store as store_module
    store_module.Lock = TimedLock
    rnd = random.Random(2)
    while not stop.is_set():
        key = "203.0.113.0/24 bench%d@example.org x@example.net" % rnd.randrange(10 ** 9)
        store = open_store(settings)
        now = int(time.time())

        def change(entry):
            _, _, new, _ = policy.decide(entry, now, settings)
            return None, new
        entry = store.lookup(key)
        store.update(key, change)
        store.close()
        counter[0] += 1


def plugin_runs(launcher, directory, stop, walls):
    env = {"GL_DIR": directory, "TCPREMOTEIP": "198.51.100.7", "SMTPMAILFROM": "a@example.org",
           "SMTPRCPTTO": "b@example.net", "SMTPRCPTHOSTSOK": "1", "SMTPRCPTCOUNT": "0"}
    i = 0
    while not stop.is_set():
        i += 1
        env["SMTPRCPTTO"] = "b%d@example.net" % i
        started = time.monotonic()
        subprocess.run([launcher], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.monotonic() - started)


def main():
    directory = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10 ** 6
    os.makedirs(directory, mode=0o700, exist_ok=True)
    now = int(time.time())
    started = time.monotonic()
    expected = build(directory, count, now)
    print("built %d entries in %.1f s, expected %s, %.0f MiB" % (
        count, time.monotonic() - started, expected,
        os.path.getsize(os.path.join(directory, "qgrey.sqlite")) / 2 ** 20))
    environ = {b"GL_DIR": directory.encode()}
    settings = settings_module.load(environ)
    launcher = os.path.join(directory, "qgrey-launcher")
    subprocess.run([sys.executable, "-m", "qgrey.launcher", launcher], check=True,
                   stdout=subprocess.DEVNULL)
    # Baseline: plugin runs without qgrey-expire.
    stop, walls, counter = threading.Event(), [], [0]
    thread = threading.Thread(target=plugin_runs, args=(launcher, directory, stop, walls))
    thread.start()
    time.sleep(3)
    stop.set()
    thread.join()
    base = sorted(walls)
    print("plugin runs alone: %d, median %.1f ms, max %.1f ms" % (
        len(base), 1000 * base[len(base) // 2], 1000 * base[-1]))

    stop, walls = threading.Event(), []
    threads = [threading.Thread(target=plugin_runs, args=(launcher, directory, stop, walls))]
    proc = subprocess.Popen([sys.executable, "-c", "from qgrey.expire import main; main()"],
                            env=dict(os.environ, GL_DIR=directory), stdout=subprocess.PIPE)
    # The in-process decision loop runs in a child so that its timer signals
    # do not land in this process's threads.
    child = subprocess.Popen([sys.executable, __file__, "--decide", directory], stdout=subprocess.PIPE)
    for t in threads:
        t.start()
    started = time.monotonic()
    out, _ = proc.communicate()
    elapsed = time.monotonic() - started
    for t in threads:
        stop.set()
        t.join()
    child.terminate()
    child_out, _ = child.communicate()
    print("qgrey-expire: %.1f s, exit %d: %s" % (elapsed, proc.returncode, out.decode().strip()))
    walls.sort()
    print("plugin runs during expire: %d, median %.1f ms, max %.1f ms" % (
        len(walls), 1000 * walls[len(walls) // 2], 1000 * walls[-1]))
    print(child_out.decode().strip())


def decide_child(directory):
    import signal
    settings = settings_module.load({b"GL_DIR": directory.encode()})
    stop, counter = threading.Event(), [0]

    def report(*_):
        waits = sorted(TimedLock.waits)
        print("in-process decisions during expire: %d, lock waits: median %.2f ms, "
              "p99 %.1f ms, max %.1f ms" % (
                  counter[0], 1000 * waits[len(waits) // 2], 1000 * waits[int(len(waits) * 0.99)],
                  1000 * waits[-1]))
        sys.stdout.flush()
        os._exit(0)
    signal.signal(signal.SIGTERM, report)
    decisions(settings, stop, counter)


if __name__ == "__main__":
    if sys.argv[1] == "--decide":
        decide_child(sys.argv[2])
    else:
        main()
