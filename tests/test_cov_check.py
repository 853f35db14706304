"""qgrey-admin check on GL_DIRs that are wrong in the ways the plugin
refuses or stumbles on (qgrey-admin(8), check), as root and as the user
the plugin runs as: the exact problem lines, the summary line, exit 1."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import NOBODY, needs_root, system_install

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def installed():
    """The package under test installed for the system's Python, as the
    README says, where nobody can run it: the launcher check then finds
    nothing wrong with the launcher itself."""
    needs_root()
    path = tempfile.mkdtemp(prefix="qgrey-cov-install-", dir="/tmp")
    os.chmod(path, 0o755)
    yield system_install(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def base(installed):
    """A directory of root's that nobody can search, holding a
    control/smtpplugins that lists qgrey's launcher under [rcpt]."""
    path = tempfile.mkdtemp(prefix="qgrey-cov-check-", dir="/tmp")
    os.chmod(path, 0o755)
    with open(path + "/plugins", "w") as f:
        f.write("[rcpt]\n%s/qgrey\n" % installed)
    os.chmod(path + "/plugins", 0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def check(base, gl_dir, user=None, **env):
    command = [os.path.join(BIN, "qgrey-admin"), "check", "--smtpplugins", base + "/plugins"]
    if user is not None:
        command += ["--user", user]
    done = subprocess.run(command, env=dict({"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}, **env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def problems(*lines):
    return (1, "".join("problem: %s\n" % line for line in lines)
            + "qgrey will not work as it should: %d problem%s\n" % (len(lines), "s" * (len(lines) > 1)),
            "")


def state(base, mode=0o700, owner=0):
    path = base + "/state"
    os.mkdir(path)
    os.chmod(path, mode)
    os.chown(path, owner, owner)
    return path


def test_all_right(base):
    gl_dir = state(base)
    assert check(base, gl_dir) == (0, "ok: GL_DIR=%s GL_STORE=sqlite\n" % gl_dir, "")


def test_gl_dir_not_a_directory_or_not_reachable(base):
    open(base + "/file", "w").close()
    assert check(base, base + "/file") == problems(
        "GL_DIR %s/file is not a directory; fix: mkdir -m 700 it, owned by root" % base)
    assert check(base, base + "/file/state") == problems("GL_DIR %s/file/state: Not a directory" % base)


def test_gl_dir_its_group_may_write(base):
    gl_dir = state(base, 0o770)
    assert check(base, gl_dir) == problems(
        "GL_DIR %s is writable by its group: another user could replace any file the plugin "
        "reads there, and the plugin refuses it (reason=directory); fix: chmod go-w %s"
        % (gl_dir, gl_dir))


def test_a_bad_setting(base):
    gl_dir = state(base)
    assert check(base, gl_dir, GL_DELAY="abc") == problems(
        "setting: GL_DELAY=abc from environment: not a duration (a number of seconds, "
        "optionally with s, m, h or d); using 300")


def test_files_in_gl_dir_that_are_not_what_the_plugin_reads(base):
    gl_dir = state(base)
    os.mkdir(gl_dir + "/lock")
    assert check(base, gl_dir) == problems("%s/lock is not a regular file; fix: remove it" % gl_dir)
    os.rmdir(gl_dir + "/lock")
    os.mkfifo(gl_dir + "/.whitelist-clients.cache")
    os.mkdir(gl_dir + "/config")
    assert check(base, gl_dir) == problems(
        "%s/.whitelist-clients.cache is not a regular file (a FIFO); fix: remove it (the plugin "
        "writes the cache of a list again)" % gl_dir,
        "%s/config is not a regular file (a directory), and the plugin does not read it; fix: "
        "replace it with a regular file" % gl_dir)


def test_config_linked_to_another_users_file(base):
    gl_dir = state(base)
    with open(base + "/other", "w") as f:
        f.write("GL_DELAY=60\n")
    os.chown(base + "/other", NOBODY, NOBODY)
    os.symlink(base + "/other", gl_dir + "/config")
    assert check(base, gl_dir) == problems(
        "%s/config is a link to a file of nobody's, and the plugin follows a link there only to "
        "a file of root's or root's; fix: chown root %s/other" % (gl_dir, base))


def test_a_dbm_database_with_a_bad_entry(base):
    gnu = pytest.importorskip("dbm.gnu", reason="this Python has no dbm.gnu")
    gl_dir = state(base)
    db = gnu.open(gl_dir + "/qgrey.gdbm", "c", 0o600)
    db[b"k"] = b"junk"
    db[b"ok"] = b"1 2 0 1"
    db.close()
    assert check(base, gl_dir, GL_STORE="dbm.gnu") == problems(
        "database %s/qgrey.gdbm: bad entry b'k': b'junk'" % gl_dir)


def test_as_the_plugins_user(base):
    gl_dir = state(base, owner=12345)
    assert check(base, gl_dir, user="nobody") == problems(
        "GL_DIR %s belongs to 12345, not to nobody, and the plugin refuses it (reason=directory); "
        "fix: chown -R nobody %s" % (gl_dir, gl_dir))
    os.chown(gl_dir, NOBODY, NOBODY)
    listed = gl_dir + "/whitelist-senders"
    with open(listed, "w") as f:
        f.write("a@example.org\n")
    os.chown(listed, NOBODY, NOBODY)
    os.chmod(listed, 0o200)
    assert check(base, gl_dir, user="nobody") == problems(
        "%s is not readable by nobody (owner nobody, mode 0200), and the plugin cannot use it; "
        "fix: chmod u+r %s" % (listed, listed))
    os.unlink(listed)
    os.chmod(gl_dir, 0o500)
    assert check(base, gl_dir, user="nobody") == problems(
        "GL_DIR %s is not writable by nobody (the database and its journal are created there); "
        "fix: chown nobody %s" % (gl_dir, gl_dir))
    os.chmod(gl_dir, 0o300)
    assert check(base, gl_dir, user="nobody") == problems(
        "cannot list GL_DIR %s as nobody: Permission denied; fix: chown nobody %s" % (gl_dir, gl_dir))
