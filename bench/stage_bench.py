"""One message at each stage: GL_STAGE=rcpt against GL_STAGE=data.

A message is every plugin run qmail-spp makes for it, in order, with the
variables the runs set (S) and unset (U) carried from one to the next as
qmail-smtpd does: at stage rcpt one qgrey run per recipient; at stage data
the [mail] line (/bin/sh -c 'echo SQGREY_DATA='), one qgrey run per
recipient, and the [data] entry (a shell script that starts Python only
when a RCPT recorded something). Runs alternate between the stages so that
drift in machine load hits both; figures are medians of the wall time
and of the CPU time (user + system) of all the message's processes, the
latter from getrusage(RUSAGE_CHILDREN), which waiting for a busy machine's
cores does not inflate. Standard library only; used by bench/run.
"""
import os
import resource
import statistics
import subprocess
import time

MAIL_LINE = ["/bin/sh", "-c", "echo SQGREY_DATA="]


def _run(argv, env):
    result = subprocess.run(argv, env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit("bench: %s exited with status %d" % (argv, result.returncode))
    return result.stdout


def _apply(env, out):
    """qmail-spp's S and U; -> the other reply lines."""
    rest = []
    for line in out.splitlines():
        if line[:1] == b"S":
            name, _, value = line[1:].partition(b"=")
            env[name.decode()] = value.decode()
        elif line[:1] == b"U":
            env.pop(line[1:].decode(), None)
        else:
            rest.append(line[:1])
    return rest


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def message(stage, rcpt_launcher, data_launcher, env, recipients):
    """-> (seconds, CPU seconds, reply kinds: the first letters of the other lines)."""
    env = dict(env, GL_STAGE=stage)
    replies = []
    cpu = _children_cpu()
    started = time.perf_counter()
    if stage == "data":
        replies += _apply(env, _run(MAIL_LINE, env))
    for i, recipient in enumerate(recipients):
        env.update(SMTPRCPTTO=recipient, SMTPRCPTCOUNT=str(i), SMTPRCPTCOUNTALL=str(i + 1))
        replies += _apply(env, _run([rcpt_launcher], env))
    if stage == "data":
        replies += _apply(env, _run([data_launcher], env))
    return time.perf_counter() - started, _children_cpu() - cpu, replies


def compare(rcpt_launcher, data_launcher, cases, runs):
    """cases: [(name, env, recipients)] -> table rows (name, recipients,
    rcpt ms, data ms, wall ratio, rcpt CPU ms, data CPU ms, CPU ratio,
    replies at rcpt, replies at data)."""
    rows = []
    for name, env, recipients in cases:
        times = {"rcpt": [], "data": []}
        cpus = {"rcpt": [], "data": []}
        replies = {}
        for _ in range(runs):
            for stage in ("rcpt", "data"):
                seconds, cpu, replies[stage] = message(stage, rcpt_launcher, data_launcher, env,
                                                       recipients)
                times[stage].append(seconds)
                cpus[stage].append(cpu)
        rcpt, data = (statistics.median(times[s]) * 1000 for s in ("rcpt", "data"))
        rcpt_cpu, data_cpu = (statistics.median(cpus[s]) * 1000 for s in ("rcpt", "data"))
        rows.append((name, len(recipients), rcpt, data, data / rcpt, rcpt_cpu, data_cpu,
                     data_cpu / rcpt_cpu,
                     "".join(r.decode() for r in replies["rcpt"]) or "-",
                     "".join(r.decode() for r in replies["data"]) or "-"))
    return rows


def table(rows):
    lines = ["| message | recipients | GL_STAGE=rcpt | GL_STAGE=data | data/rcpt | CPU rcpt | "
             "CPU data | CPU data/rcpt | replies rcpt | replies data |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, count, rcpt, data, ratio, rcpt_cpu, data_cpu, cpu_ratio, at_rcpt, at_data in rows:
        lines.append("| %s | %d | %.1f ms | %.1f ms | %.2fx | %.1f ms | %.1f ms | %.2fx | %s | %s |" % (
            name, count, rcpt, data, ratio, rcpt_cpu, data_cpu, cpu_ratio, at_rcpt, at_data))
    return "\n".join(lines)


def main():
    """python3 bench/stage_bench.py [RUNS]: a standalone run on a scratch GL_DIR."""
    import sys
    import tempfile
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    work = tempfile.mkdtemp(prefix="qgrey-stage-")
    rcpt_launcher, data_launcher = os.path.join(work, "qgrey"), os.path.join(work, "qgrey-data")
    for args in ([rcpt_launcher], ["--data", data_launcher]):
        subprocess.run([sys.executable, "-m", "qgrey.launcher"] + args, check=True,
                       stdout=subprocess.DEVNULL)
    gl_dir = os.path.join(work, "state")
    os.mkdir(gl_dir, 0o700)
    print(table(compare(rcpt_launcher, data_launcher, cases(gl_dir), runs)))


BASE_ENV = {
    "PROTO": "TCP", "TCPLOCALIP": "192.0.2.1", "TCPREMOTEIP": "198.51.100.7",
    "TCPREMOTEPORT": "40000", "SMTPHELOHOST": "mx.example.org", "SMTPRCPTHOSTSOK": "1",
    "SMTPMAILFROM": "known@example.org",
}


def cases(gl_dir):
    """Messages from a known sender to 1 and 5 recipients it has mailed
    before (stored in gl_dir, a SQLite store), and from a relay client."""
    from qgrey import keys, settings as settings_module
    from qgrey.record import Entry
    from qgrey.store import open_store
    settings = settings_module.load({b"GL_DIR": gl_dir.encode()})
    recipients = ["friend%d@example.net" % i for i in range(5)]
    now = int(time.time())
    store = open_store(settings)
    try:
        store.put_many([(keys.triplet(b"198.51.100.7", b"known@example.org", r.encode(), settings),
                         Entry(now - 3000, now - 60, now - 2600, 1)) for r in recipients])
    finally:
        store.close()
    env = dict(BASE_ENV, GL_DIR=gl_dir)
    return [("known sender", env, recipients[:1]),
            ("known sender", env, recipients),
            ("relay client", dict(env, RELAYCLIENT=""), recipients)]


if __name__ == "__main__":
    main()
