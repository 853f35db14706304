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
