"""examples/run, the qmail-smtpd run script of the README, really run: its
lines marked "# this host" are given this machine's paths, address and
port (every other line stays as shipped), it starts the harness kit's
qmail-smtpd under softlimit and tcpserver as qmaild, and an SMTP session
shows that the GL_* settings it exports reached qgrey.

Needs root and the qmail-spp harness kit, as tests/test_qmail_smtpd.py."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from test_qmail_smtpd import Client, kit  # noqa: F401  (kit: the fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "run")
MARKED = re.compile(r"([A-Z_]+)=(\S+)( +# this host.*)\n")


def this_host(text, values):
    """The script with the values of its marked lines replaced; each marked
    line must be one of values, and only marked lines change."""
    out, seen = [], set()
    for line in text.splitlines(True):
        marked = MARKED.fullmatch(line)
        if marked:
            name = marked.group(1)
            assert name in values, line
            seen.add(name)
            line = "%s=%s%s\n" % (name, values[name], marked.group(3))
        out.append(line)
    assert seen == set(values), seen
    return "".join(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def place(kit):  # noqa: F811
    """A directory qmaild can reach, with a GL_DIR of its own."""
    top = tempfile.mkdtemp(prefix="qgrey-run.", dir="/var/tmp")
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def test_the_example_run_script_sets_qgrey_s_settings(kit, place):  # noqa: F811
    qmaild = pwd.getpwnam("qmaild")
    gl_dir = os.path.join(place, "qgrey")
    os.mkdir(gl_dir, 0o700)
    os.chown(gl_dir, qmaild.pw_uid, qmaild.pw_gid)
    rules = os.path.join(place, "tcp.smtp.cdb")
    subprocess.run(["tcprules", rules, rules + ".tmp"], input=b":allow\n", check=True)
    plugins = os.path.join(place, "smtpplugins")
    with open(plugins, "w") as f:
        f.write("[rcpt]\n%s\n" % kit.rcpt)
    os.chmod(plugins, 0o644)
    port = free_port()
    with open(EXAMPLE) as f:
        shipped = f.read()
    script = os.path.join(place, "run")
    with open(script, "w") as f:
        f.write(this_host(shipped, {"QMAIL": kit.dir + "/qmail", "RULES": rules,
                                    "QMAILD": "qmaild", "ADDRESS": "127.0.0.1", "PORT": str(port),
                                    "GL_DIR": gl_dir}))
    os.chmod(script, 0o755)
    log_path = os.path.join(place, "log")
    with open(log_path, "wb") as log:
        # As supervise runs it, in its directory; SPPCONFFILE names this
        # test's plugin list instead of the kit's control/smtpplugins.
        server = subprocess.Popen([script], cwd=place, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  env={"PATH": "/usr/bin:/bin", "SPPCONFFILE": plugins})
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, open(log_path).read()
            try:
                client = Client(port)
                break
            except OSError:
                assert time.monotonic() < deadline, open(log_path).read()
                time.sleep(0.1)
        client.cmd("HELO client.test", "250 harness.test")
        client.cmd("MAIL FROM:<alice@sender.test>", "250 ok")
        # GL_MESSAGE of the script, in the reply
        client.cmd("RCPT TO:<a@example.test>", "451 4.7.1 Greylisted for 5 minutes, please try again later")
        # GL_DIR of the script: the database is there, qmaild's
        database = os.path.join(gl_dir, "qgrey.sqlite")
        st = os.stat(database)
        assert (st.st_uid, st.st_mode & 0o777) == (qmaild.pw_uid, 0o600)
        # GL_ON_ERROR=defer of the script: a database qmaild cannot read defers
        os.chmod(database, 0)
        client.cmd("RCPT TO:<b@example.test>",
                   "451 4.3.0 Greylisting is temporarily unavailable, please try again later")
        client.quit()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    with open(log_path) as f:
        lines = [line for line in f.read().splitlines() if line.startswith("qgrey:")]
    assert lines[0] == ("qgrey: action=greylist reason=new client=127.0.0.1 sender=alice@sender.test "
                        "recipient=a@example.test waited=0")
    assert len(lines) == 2 and lines[1].startswith(
        "qgrey: action=error reason=io client=127.0.0.1 sender=alice@sender.test "
        "recipient=b@example.test detail="), lines
    assert lines[1].endswith("; answered defer"), lines
