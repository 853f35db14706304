"""The tools run as root on a GL_DIR that does not exist: no owner's ids
to take, and the store's one-line fatal error with exit status 111
(qgrey-admin(8), qgrey-expire(8): 111 temporary failure)."""
import os
import subprocess
import sys

import pytest

from conftest import needs_root

BIN = os.path.dirname(sys.executable)


@pytest.mark.parametrize("command", [["qgrey-expire"], ["qgrey-expire", "--vacuum"],
                                     ["qgrey-admin", "list"], ["qgrey-admin", "stats"]])
def test_a_missing_gl_dir(command, tmp_path):
    needs_root()
    gl_dir = str(tmp_path / "missing" / "state")
    done = subprocess.run([os.path.join(BIN, command[0])] + command[1:],
                          env={"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}, cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        111, b"", ("%s: fatal: GL_DIR %s: No such file or directory\n" % (command[0], gl_dir)).encode())
    assert os.listdir(str(tmp_path)) == []


def admin(gl_dir, *args, stdin=b""):
    done = subprocess.run([os.path.join(BIN, "qgrey-admin")] + list(args),
                          env={"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}, cwd="/",
                          input=stdin, capture_output=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def fatal(line):
    return 100, b"", ("qgrey-admin: fatal: %s\n" % line).encode()


@pytest.mark.parametrize("args, line", [
    (["allow", "--client", "192.0.2.1", "198.51.100.1", "a@example.org", "b@example.net"],
     "give either --client or a triplet"),
    (["delete", "--client", "192.0.2.1", "--key", "x"], "give either --client or a triplet"),
    (["allow", "--key", "192.0.2 a@example.org b@example.net", "192.0.2.1", "a@example.org",
      "b@example.net"], "give either --key or CLIENT SENDER RECIPIENT"),
    (["allow", "192.0.2.1", "a@example.org"],
     "give CLIENT SENDER RECIPIENT (as in the envelope; <> for the null sender) or --key"),
])
def test_admin_usage_of_allow_and_delete(gl_dir, args, line):
    assert admin(gl_dir, *args) == fatal(line)
    assert os.listdir(gl_dir) == []


KEY = "192.0.2 a@example.org b@example.net"


@pytest.mark.parametrize("body, line", [
    ("192.0.2 a@example.org %s\t1\t2\t0\t1\n" % ("x" * 4100), "line 2: key longer than 4096 characters"),
    ("x" * 5000, "line 2: longer than 4160 characters"),
    (KEY + "\t1\t2\t0\t2147483648\n", "line 2: tries=2147483648 is more than 2147483647"),
    (KEY + "\t253402300800\t2\t0\t1\n",
     "line 2: first=253402300800 is more than 253402300799 (9999-12-31 23:59:59 UTC)"),
    (KEY + "\t1\t2\t0\t123456789012345678901234567\n",
     "line 2: tries=12345678901234567890... is more than 2147483647"),
])
def test_admin_load_refuses_values_no_store_keeps(gl_dir, body, line):
    # Refused in the first pass: nothing is written.
    assert admin(gl_dir, "load", stdin=("qgrey-dump 1\n" + KEY + "\t1\t2\t0\t1\n" + body).encode()) == \
        fatal(line.replace("line 2", "line 3"))
    assert admin(gl_dir, "dump") == (0, b"qgrey-dump 1\n", b"")
