"""Time qgrey-report on a synthetic day of a busy server's log.

    python3 bench/report_bench.py FILE [LINES]

Writes FILE with LINES (default 1,000,000) multilog lines, then runs
qgrey-report on it, without and with --html, and prints the time taken and
the peak memory of each.
"""
import os
import random
import subprocess
import sys
import time


def write(path, count):
    rnd = random.Random(3)
    start = 1700000000
    with open(path, "w") as out:
        for i in range(count):
            stamp = "@%016x%08x" % ((1 << 62) + 10 + start + i * 86400 // count, 0)
            client = "%d.%d.%d.%d" % (rnd.randrange(1, 224), rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255))
            sender = "user%d@example%d.org" % (rnd.randrange(50000), rnd.randrange(2000))
            rcpt = "rcpt%d@example.net" % rnd.randrange(5000)
            kind = rnd.random()
            if kind < 0.35:
                action, reason, waited = "greylist", "new", 0
            elif kind < 0.45:
                action, reason, waited = "greylist", "early", rnd.randrange(300)
            elif kind < 0.6:
                action, reason, waited = "pass", "delayed", int(rnd.expovariate(1 / 1200.0)) + 300
            elif kind < 0.95:
                action, reason, waited = "pass", "known", rnd.randrange(10 ** 6)
            else:
                out.write("%s tcpserver: end %d status 0\n" % (stamp, i))
                continue
            out.write("%s qgrey: action=%s reason=%s client=%s sender=%s recipient=%s waited=%d\n" % (
                stamp, action, reason, client, sender, rcpt, waited))


def timed(argv):
    """Run argv -> (stdout, seconds, peak resident KiB of the child)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit("%s: exit status %d" % (" ".join(argv), process.returncode))
    return out, time.monotonic() - started, usage.ru_maxrss


def main():
    path = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10 ** 6
    write(path, count)
    report = [sys.executable, "-c", "from qgrey.report import main; main()"]
    text, text_seconds, text_kib = timed(report + [path])
    page = path + ".html"
    html_text, html_seconds, html_kib = timed(report + ["--html", page, path])
    print(text)
    print("%d lines (%.0f MiB):" % (count, os.path.getsize(path) / 2 ** 20))
    print("  text report:        %.1f s, peak %d KiB" % (text_seconds, text_kib))
    print("  with --html PAGE:   %.1f s, peak %d KiB, page %d KiB, same text: %s" % (
        html_seconds, html_kib, os.path.getsize(page) // 1024, "yes" if html_text == text else "NO"))
    os.unlink(page)


if __name__ == "__main__":
    main()
