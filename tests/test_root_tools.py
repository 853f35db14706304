"""Root's tools in a GL_DIR that the plugin's user owns: run as root,
qgrey-admin and qgrey-expire take the ids of GL_DIR's owner before they
read anything there, follow no link planted there, and leave every file
they create to that owner. nobody (uid 65534) stands in for the plugin's
user. The installed commands run as qmail-spp's cron would run them:
environment only, stdin closed, cwd /."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import NOBODY, SPP_ENV, needs_root, spp, unavailable

BIN = os.path.dirname(sys.executable)
SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/qgrey"
NOGROUP = 65534  # nobody's group in its passwd entry (Debian: nogroup)
SECRET = b"root:only:this line must never be copied or overwritten\n"
GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"


@pytest.fixture(autouse=True)
def as_root():
    needs_root()


@pytest.fixture
def public():
    """A directory every user can reach (pytest's own are root's only)."""
    top = tempfile.mkdtemp(prefix="qgrey-root-tools-")
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top)


@pytest.fixture
def gl_dir(public):
    """A new GL_DIR, 0700, owned by nobody."""
    path = public + "/state"
    os.mkdir(path, 0o700)
    os.chown(path, NOBODY, NOGROUP)
    return path


@pytest.fixture
def secret():
    """A file only root may read or write: 0600 root in a 0700 root directory."""
    top = tempfile.mkdtemp(prefix="qgrey-root-only-")
    path = top + "/secret"
    with open(path, "wb") as f:
        f.write(SECRET)
    os.chmod(path, 0o600)
    yield path
    shutil.rmtree(top)


def needs_gdbm():
    try:
        import dbm.gnu  # noqa: F401
    except ImportError:
        unavailable("dbm.gnu is not in this Python (Debian: apt-get install python3-gdbm)")


def tool(name, *args, gl_dir, env=None, command=None):
    """Run an installed tool as root -> CompletedProcess (bytes)."""
    environment = {"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}
    environment.update(env or {})
    return subprocess.run((command or [os.path.join(BIN, name)]) + list(args), env=environment,
                          cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)


def snapshot(path):
    """What must not change in a file: bytes, type and mode, owner, group, links."""
    st = os.lstat(path)
    with open(path, "rb") as f:
        return f.read(), st.st_mode, st.st_uid, st.st_gid, st.st_nlink


def owners(directory):
    """{name: (mode, uid, gid)} of what is in directory."""
    found = {}
    for name in os.listdir(directory):
        st = os.lstat(os.path.join(directory, name))
        found[name] = (st.st_mode, st.st_uid, st.st_gid)
    return found


def holds_secret(directory):
    """Whether any regular file in directory holds the secret's bytes."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if stat.S_ISREG(os.lstat(path).st_mode):
            with open(path, "rb") as f:
                if SECRET in f.read():
                    return True
    return False


FILE = stat.S_IFREG | 0o600
LIST = stat.S_IFREG | 0o644
LINK = stat.S_IFLNK | 0o777
STORE_FILES = {"lock": (FILE, NOBODY, NOGROUP), "lock.queue": (FILE, NOBODY, NOGROUP),
               "qgrey.sqlite": (FILE, NOBODY, NOGROUP)}


# Reproduction 1: whitelisting a client as root

def test_allow_client_leaves_a_link_at_the_old_temporary_name_alone(gl_dir, secret):
    """The list used to be written as whitelist-clients.new, followed; the
    new list has a random name now, and a link planted at the old name is
    neither followed nor touched."""
    planted = gl_dir + "/whitelist-clients.new"
    os.symlink(secret, planted)
    os.lchown(planted, NOBODY, NOGROUP)
    before = snapshot(secret)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"whitelisted 198.51.100.7/32 in %s/whitelist-clients\n" % gl_dir.encode(), b"")
    assert snapshot(secret) == before
    assert os.readlink(planted) == secret
    with open(gl_dir + "/whitelist-clients", "rb") as f:
        assert f.read() == b"198.51.100.7/32\n"
    assert owners(gl_dir) == {"whitelist-clients": (LIST, NOBODY, NOGROUP),
                              "whitelist-clients.new": (LINK, NOBODY, NOGROUP)}


def test_allow_client_adds_to_the_owner_s_list(gl_dir):
    path = gl_dir + "/whitelist-clients"
    with open(path, "wb") as f:
        f.write(b"# by hand\n192.0.2.0/24")
    os.chown(path, NOBODY, NOGROUP)
    os.chmod(path, 0o644)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7/24", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"whitelisted 198.51.100.0/24 in %s\n" % path.encode(), b"")
    again = tool("qgrey-admin", "allow", "--client", "192.0.2.0/24", gl_dir=gl_dir)
    assert (again.returncode, again.stdout, again.stderr) == (
        0, b"already whitelisted 192.0.2.0/24 in %s\n" % path.encode(), b"")
    with open(path, "rb") as f:
        assert f.read() == b"# by hand\n192.0.2.0/24\n198.51.100.0/24\n"
    assert owners(gl_dir) == {"whitelist-clients": (LIST, NOBODY, NOGROUP)}


@pytest.fixture
def readable_list():
    """A list kept outside GL_DIR, as an administrator might keep it: root's, 0644."""
    top = tempfile.mkdtemp(prefix="qgrey-etc-")
    os.chmod(top, 0o755)
    path = top + "/whitelist-clients"
    with open(path, "wb") as f:
        f.write(b"192.0.2.0/24\n")
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(top)


@pytest.mark.parametrize("target", ["secret", "readable_list"])
def test_allow_client_refuses_a_list_that_is_a_link(gl_dir, target, request):
    """A list that is a symbolic link is not read through nor replaced: one
    line names the file to edit. Nothing in GL_DIR holds what it points at."""
    target = request.getfixturevalue(target)
    path = gl_dir + "/whitelist-clients"
    os.symlink(target, path)
    os.lchown(path, NOBODY, NOGROUP)
    before = snapshot(target)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: %s is a symbolic link to %s: add 198.51.100.7/32 to "
        b"that file instead (qgrey-admin does not write through links)\n"
        % (path.encode(), target.encode()))
    assert snapshot(target) == before
    assert os.readlink(path) == target
    assert owners(gl_dir) == {"whitelist-clients": (LINK, NOBODY, NOGROUP)}
    assert not holds_secret(gl_dir)


def test_allow_client_does_not_copy_a_hard_link_to_a_root_file(gl_dir, secret):
    """A list that is another name of a root-only file: root's tool, working
    as GL_DIR's owner, cannot read it, and says so."""
    path = gl_dir + "/whitelist-clients"
    os.link(secret, path)
    before = snapshot(secret)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: cannot read %s: Permission denied\n" % path.encode())
    assert snapshot(secret) == before
    assert os.listdir(gl_dir) == ["whitelist-clients"]


def test_allow_client_refuses_a_list_readable_only_by_root_in_root_s_directory(public):
    """Root's own GL_DIR (no ids to take): a list only root can read is not
    copied into one every user can read."""
    gl_dir = public + "/rootstate"
    os.mkdir(gl_dir, 0o700)
    path = gl_dir + "/whitelist-clients"
    with open(path, "wb") as f:
        f.write(SECRET)
    os.chmod(path, 0o600)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: %s is readable only by its owner: qgrey-admin run as "
        b"root does not copy it into a list others can read; fix: chmod 644 %s (the plugin's "
        b"user must read it)\n" % (path.encode(), path.encode()))
    assert snapshot(path)[:3] == (SECRET, FILE, 0)
    assert os.listdir(gl_dir) == ["whitelist-clients"]


def test_allow_client_refuses_a_fifo_at_once(gl_dir):
    path = gl_dir + "/whitelist-clients"
    os.mkfifo(path, 0o644)
    os.chown(path, NOBODY, NOGROUP)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: cannot read %s: not a regular file\n" % path.encode())


# Defence in depth: what the store creates follows no link either

@pytest.mark.parametrize("name, status, message", [
    ("lock", 111, b"cannot open lock file %s/lock: Too many levels of symbolic links"),
    ("lock.queue", 111, b"cannot open lock file %s/lock.queue: Too many levels of symbolic links"),
    ("qgrey.sqlite-journal", 100, b"%s/qgrey.sqlite-journal is not a regular file"),
])
def test_store_files_planted_as_links(gl_dir, secret, name, status, message):
    """Run as the owner, SQLite (which opens by path) meets the owner's
    permissions at the end of a link, not root's."""
    planted = gl_dir + "/" + name
    os.symlink(secret, planted)
    os.lchown(planted, NOBODY, NOGROUP)
    before = snapshot(secret)
    result = tool("qgrey-admin", "allow", "192.0.2.9", "carol@example.org", "dave@example.net",
                  gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        status, b"", b"qgrey-admin: fatal: " + message % gl_dir.encode() + b"\n")
    assert snapshot(secret) == before
    assert os.readlink(planted) == secret


def test_config_is_read_as_the_owner(gl_dir, secret):
    """GL_DIR/config is read with the owner's ids: a link to a file only
    root can read gives root's tool nothing from it."""
    with open(secret, "wb") as f:
        f.write(b"GL_STORE=dbm.gnu\n")
    os.symlink(secret, gl_dir + "/config")
    result = tool("qgrey-admin", "allow", "192.0.2.9", "carol@example.org", "dave@example.net",
                  gl_dir=gl_dir)
    assert (result.returncode, result.stdout) == (
        0, b"added 192.0.2.0/24 carol@example.org dave@example.net\n")
    assert result.stderr.startswith(b"qgrey-admin: warning: ")
    assert b"%s/config" % gl_dir.encode() in result.stderr
    assert sorted(os.listdir(gl_dir)) == ["config", "lock", "lock.queue", "qgrey.sqlite"]


# Reproduction 9: root's tools on a new GL_DIR, then the plugin as its owner

def plugin_for_nobody(public, via):
    """A command that runs the plugin, that nobody can execute: the launcher
    of this environment (when nobody can run its interpreter and read the
    package), or the system's Python on a world-readable copy of qgrey."""
    if via == "launcher":
        launcher = public + "/qgrey"
        subprocess.run([sys.executable, "-m", "qgrey.launcher", launcher], check=True, cwd="/",
                       stdout=subprocess.DEVNULL)
        os.chmod(launcher, 0o755)
        probe = [sys.executable, "-IS", "-c", "import sys; sys.path.insert(0, %r); "
                 "import qgrey.plugin" % os.path.dirname(PACKAGE)]
        try:
            reachable = spp(probe, {}, user=NOBODY).returncode == 0
        except PermissionError:
            reachable = False
        if not reachable:
            pytest.skip("nobody cannot run %s or read %s: the system Python case covers it"
                        % (sys.executable, PACKAGE))
        return [launcher]
    copy = public + "/lib"
    shutil.copytree(PACKAGE, copy + "/qgrey", ignore=shutil.ignore_patterns("__pycache__"))
    for top, dirs, names in os.walk(copy):
        os.chmod(top, 0o755)
        for name in names:
            os.chmod(os.path.join(top, name), 0o644)
    return [SYSTEM_PYTHON, "-IS", "-c", "import sys; sys.path.insert(0, %r); "
            "from qgrey.plugin import main; main()" % copy]


@pytest.mark.parametrize("via", ["launcher", "system-python"])
def test_root_allow_on_a_new_directory_then_the_plugin_greylists(public, gl_dir, via):
    result = tool("qgrey-admin", "allow", "192.0.2.9", "carol@example.org", "dave@example.net",
                  gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"added 192.0.2.0/24 carol@example.org dave@example.net\n", b"")
    assert owners(gl_dir) == STORE_FILES
    plugin = plugin_for_nobody(public, via)
    new = spp(plugin, dict(SPP_ENV, GL_DIR=gl_dir), user=NOBODY)
    assert (new.returncode, new.stdout, new.stderr) == (
        0, GREYLISTED, b"qgrey: action=greylist reason=new client=198.51.100.7 "
        b"sender=alice@example.org recipient=bob@example.net waited=0\n")
    allowed = spp(plugin, dict(SPP_ENV, GL_DIR=gl_dir, TCPREMOTEIP="192.0.2.9",
                               SMTPMAILFROM="carol@example.org", SMTPRCPTTO="dave@example.net"),
                  user=NOBODY)
    assert allowed.returncode == 0
    assert allowed.stdout.startswith(b"HX-Greylist: passed (known sender) by qgrey-")
    assert allowed.stderr == (b"qgrey: action=pass reason=known client=192.0.2.9 "
                              b"sender=carol@example.org recipient=dave@example.net waited=0\n")
    assert owners(gl_dir) == STORE_FILES


def test_root_expire_leaves_the_owner_s_files_to_the_owner(gl_dir):
    needs_gdbm()
    fresh = tool("qgrey-expire", gl_dir=gl_dir)
    assert (fresh.returncode, fresh.stderr) == (0, b"")
    assert fresh.stdout.startswith(b"removed 0: never-retried=0 lifetime-over=0; kept 0; ")
    assert owners(gl_dir) == {"lock": (FILE, NOBODY, NOGROUP)}
    for kind in ("sqlite", "dbm.gnu"):
        allowed = tool("qgrey-admin", "allow", "192.0.2.9", "carol@example.org",
                       "dave@example.net", gl_dir=gl_dir, env={"GL_STORE": kind})
        assert (allowed.returncode, allowed.stderr) == (0, b"")
        result = tool("qgrey-expire", "--vacuum", gl_dir=gl_dir, env={"GL_STORE": kind})
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout.startswith(b"removed 0: never-retried=0 lifetime-over=0; kept 1; ")
    assert owners(gl_dir) == dict(STORE_FILES, **{"qgrey.gdbm": (FILE, NOBODY, NOGROUP)})


def test_an_owner_without_a_passwd_entry_is_taken_by_number(public):
    """uid 54321 has no passwd entry: its files get the directory's group."""
    gl_dir = public + "/numeric"
    os.mkdir(gl_dir, 0o700)
    os.chown(gl_dir, 54321, 54322)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stderr) == (0, b"")
    assert owners(gl_dir) == {"whitelist-clients": (LIST, 54321, 54322)}
    result = tool("qgrey-admin", "allow", "192.0.2.9", "carol@example.org", "dave@example.net",
                  gl_dir=gl_dir)
    assert (result.returncode, result.stderr) == (0, b"")
    assert owners(gl_dir) == {"lock": (FILE, 54321, 54322), "lock.queue": (FILE, 54321, 54322),
                              "qgrey.sqlite": (FILE, 54321, 54322),
                              "whitelist-clients": (LIST, 54321, 54322)}


def test_an_owner_s_files_get_its_passwd_group(gl_dir):
    """nobody's directory in root's group: the files get nobody's own group."""
    os.chown(gl_dir, NOBODY, 0)
    result = tool("qgrey-admin", "allow", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (result.returncode, result.stderr) == (0, b"")
    assert owners(gl_dir) == {"whitelist-clients": (LIST, NOBODY, NOGROUP)}


def test_dump_and_load_files_are_root_s_own_paths(gl_dir, secret):
    """The FILE of dump and load is opened before the tool takes the
    owner's ids: root may name a file only root can reach."""
    assert tool("qgrey-admin", "allow", "192.0.2.9", "carol@example.org", "dave@example.net",
                gl_dir=gl_dir).returncode == 0
    path = os.path.dirname(secret) + "/dump"
    result = tool("qgrey-admin", "dump", path, gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    st = os.stat(path)
    assert (st.st_mode, st.st_uid) == (FILE, 0)
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    assert lines[0] == b"qgrey-dump 1" and len(lines) == 2
    assert lines[1].startswith(b"192.0.2.0/24 carol@example.org dave@example.net\t")
    other = os.path.dirname(gl_dir) + "/other"
    os.mkdir(other, 0o700)
    os.chown(other, NOBODY, NOGROUP)
    loaded = tool("qgrey-admin", "load", path, gl_dir=other)
    assert (loaded.returncode, loaded.stdout, loaded.stderr) == (0, b"loaded 1 entries\n", b"")
    assert owners(other) == STORE_FILES


@pytest.mark.parametrize("kind", ["sqlite", "dbm.gnu"])
def test_tools_installed_out_of_the_owner_s_reach(gl_dir, kind, tmp_path):
    """Python and qgrey where GL_DIR's owner cannot read (a root-only
    directory): every subcommand still works after taking the owner's ids."""
    if kind == "dbm.gnu":
        needs_gdbm()
    copy = str(tmp_path / "lib")  # pytest's directories are root's only
    shutil.copytree(PACKAGE, copy + "/qgrey", ignore=shutil.ignore_patterns("__pycache__"))
    os.chmod(str(tmp_path), 0o700)

    def run(module, *args, env=None):
        command = [SYSTEM_PYTHON, "-IS", "-c", "import sys; sys.path.insert(0, %r); "
                   "from qgrey.%s import main; main()" % (copy, module)]
        return tool(module, *args, gl_dir=gl_dir, command=command, env=dict(env or {}, GL_STORE=kind))

    triplet = ("192.0.2.9", "carol@example.org", "dave@example.net")
    key = b"192.0.2.0/24 carol@example.org dave@example.net"
    expected = [
        (("allow",) + triplet, b"added %s\n" % key),
        (("allow", "--client", "198.51.100.7"),
         b"whitelisted 198.51.100.7/32 in %s/whitelist-clients\n" % gl_dir.encode()),
        (("list", "--no-header"), None),
        (("stats",), None),
        (("dump",), None),
        (("delete",) + triplet, b"deleted %s\n" % key),
    ]
    for args, stdout in expected:
        result = run("admin", *args)
        assert (result.returncode, result.stderr) == (0, b""), args
        if stdout is not None:
            assert result.stdout == stdout
    private = run("admin", "allow", *triplet, env={"GL_PRIVACY": "1"})
    assert (private.returncode, private.stderr) == (0, b"")
    expire = run("expire")
    assert (expire.returncode, expire.stderr) == (0, b"")
    assert expire.stdout.startswith(b"removed 0: never-retried=0 lifetime-over=0; kept 1; ")
    for name, (mode, uid, gid) in owners(gl_dir).items():
        assert (uid, gid) == (NOBODY, NOGROUP), name


def test_check_as_root_works_as_the_owner(gl_dir):
    """check without --user, run as root, checks as GL_DIR's owner: what
    it creates in GL_DIR is that owner's."""
    result = tool("qgrey-admin", "check", "--smtpplugins", "/dev/null", gl_dir=gl_dir)
    assert result.returncode in (0, 1) and b"Traceback" not in result.stderr, result
    assert b"not writable by" not in result.stdout
    for name, (mode, uid, gid) in owners(gl_dir).items():
        assert (uid, gid) == (NOBODY, NOGROUP), name
