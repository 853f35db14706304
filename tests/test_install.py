"""python3 -m qgrey.install as root runs it, from a copy of the source
directory: what it refuses (one line, exit 100, nothing written), what it
writes, and an upgrade from an install made with another interpreter.
`nobody` stands for the qmail user and for an attacker holding it."""
import glob
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import NOBODY, SPP_ENV, needs_root, read_only, spp

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"
GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
NEW = (b"qgrey: action=greylist reason=new client=198.51.100.7 sender=alice@example.org "
       b"recipient=bob@example.net waited=0\n")
COMMANDS = ["qgrey", "qgrey-admin", "qgrey-data", "qgrey-expire", "qgrey-report"]
PAGES = ["qgrey-admin.8", "qgrey-expire.8", "qgrey-report.8", "qgrey.8"]
OTHERS = "another user could replace what is written there"


@pytest.fixture
def base():
    """A directory other users can reach (pytest's own are 0700), root's."""
    needs_root()
    path = tempfile.mkdtemp(prefix="qgrey-install-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def source(base):
    """A copy of the source directory, as unpacked from a release."""
    path = os.path.join(base, "src")
    os.mkdir(path)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(TOP, "qgrey"), os.path.join(path, "qgrey"), ignore=ignore)
    shutil.copytree(os.path.join(TOP, "man"), os.path.join(path, "man"), ignore=ignore)
    return path


def install(source, *args, python=SYSTEM_PYTHON, user=None):
    other = {} if user is None else {"user": user, "group": user, "extra_groups": []}
    return subprocess.run([python, "-m", "qgrey.install"] + list(args), cwd=source,
                          env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120, **other)


def installed(prefix):
    return ("installed in {p}/bin: qgrey qgrey-data qgrey-admin qgrey-expire qgrey-report\n"
            "control/smtpplugins: [rcpt] {p}/bin/qgrey  (with GL_STAGE=data also: [mail] "
            ":echo SQGREY_DATA=  [data] {p}/bin/qgrey-data)\n").format(p=prefix).encode()


def refused(line):
    return (100, b"", ("qgrey.install: refused: %s\n" % line).encode())


def outcome(done):
    return done.returncode, done.stdout, done.stderr


def snapshot(top):
    """Every entry under top but the source directory (where Python leaves
    bytecode): type and mode, owner, link target or contents."""
    seen = {}
    for directory, subdirectories, names in os.walk(top):
        if directory == top:
            subdirectories.remove("src")
        for name in subdirectories + names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = f.read()
            else:
                what = None
            seen[os.path.relpath(path, top)] = (st.st_mode, st.st_uid, st.st_gid, what)
    return seen


def root_only_files(base):
    """Three files only root may read or write, as planted links' targets."""
    secret = os.path.join(base, "secret")
    os.mkdir(secret, 0o700)
    paths = []
    for name in ("shadow", "config", "page"):
        path = os.path.join(secret, name)
        with open(path, "w") as f:
            f.write("root only: %s\n" % name)
        os.chmod(path, 0o600)
        paths.append(path)
    return paths


def nobodys_script(base):
    """What the attacker wants root to run."""
    path = os.path.join(base, "evil")
    with open(path, "w") as f:
        f.write("#!/bin/sh\ntouch %s/ran\n" % base)
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    return path


def plant(prefix, base, owner):
    """The links of reproduction 3, in a prefix made by owner."""
    shadow, config, page = root_only_files(base)
    for directory in ("", "bin", "share", "share/man", "share/man/man8"):
        path = os.path.join(prefix, directory)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)
        os.chown(path, owner, owner)
    for target, link in ((shadow, "bin/qgrey-admin.new"), (config, "pyvenv.cfg"),
                         (page, "share/man/man8/qgrey.8"), (nobodys_script(base), "bin/python3")):
        os.symlink(target, os.path.join(prefix, link))
        os.lchown(os.path.join(prefix, link), owner, owner)


def decide(bin_dir, base):
    """One decision through the installed launcher, run as nobody as
    qmail-spp runs it, on a new state directory of nobody's."""
    state = os.path.join(base, "state")
    os.mkdir(state, 0o700)
    os.chown(state, NOBODY, NOBODY)
    done = spp(os.path.join(bin_dir, "qgrey"), dict(SPP_ENV, GL_DIR=state), user=NOBODY)
    shutil.rmtree(state)
    return done.returncode, done.stdout, done.stderr


def system_minor():
    """X.Y of the system's Python (asked of it, not of the installer)."""
    return subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def site_packages(prefix):
    return sorted(os.path.relpath(d, prefix) for d, _, _ in os.walk(prefix)
                  if d.endswith("/site-packages"))


def test_prefix_made_by_another_user_is_refused_and_nothing_written(base, source):
    """Reproduction 3: a prefix nobody made, with links to root's files and
    bin/python3 to nobody's script."""
    prefix = os.path.join(base, "opt")
    plant(prefix, base, NOBODY)
    before = snapshot(base)
    done = install(source, "--prefix", prefix, "--bin", os.path.join(base, "bin"))
    assert outcome(done) == refused("--prefix %s: %s belongs to uid 65534, not to root: %s"
                                    % (prefix, prefix, OTHERS))
    assert snapshot(base) == before
    assert not os.path.exists(os.path.join(base, "ran"))
    with open(os.path.join(base, "secret", "shadow")) as f:
        assert f.read() == "root only: shadow\n"


@pytest.mark.parametrize("how", ["owned by nobody", "mode 0777"])
def test_prefix_under_a_directory_another_user_can_write_is_refused(base, source, how):
    parent = os.path.join(base, "shared")
    os.mkdir(parent)
    if how == "owned by nobody":
        os.chown(parent, NOBODY, NOBODY)
        why = "belongs to uid 65534, not to root"
    else:
        os.chmod(parent, 0o777)
        why = "is writable by group or others (mode 0777)"
    prefix = os.path.join(parent, "opt")
    plant(prefix, base, 0)
    before = snapshot(base)
    done = install(source, "--prefix", prefix, "--bin", os.path.join(base, "bin"))
    assert outcome(done) == refused("--prefix %s: %s %s: %s" % (prefix, parent, why, OTHERS))
    assert snapshot(base) == before


def test_bin_directory_another_user_can_write_is_refused(base, source):
    bin_dir = os.path.join(base, "bin")
    os.mkdir(bin_dir, 0o755)
    os.chown(bin_dir, NOBODY, NOBODY)
    os.symlink(nobodys_script(base), os.path.join(bin_dir, "qgrey-admin"))
    before = snapshot(base)
    done = install(source, "--prefix", os.path.join(base, "opt"), "--bin", bin_dir)
    assert outcome(done) == refused("--bin %s: %s belongs to uid 65534, not to root: %s"
                                    % (bin_dir, bin_dir, OTHERS))
    assert snapshot(base) == before


def test_clean_install_then_one_decision_as_the_qmail_user(base, source):
    """Run by another interpreter than the system's (the test's own), the
    install still uses /usr/bin/python3; nobody can run what it wrote."""
    prefix, bin_dir = os.path.join(base, "opt", "qgrey"), os.path.join(base, "bin")
    done = install(source, "--prefix", prefix, "--bin", bin_dir, python=sys.executable)
    assert outcome(done) == (0, installed(prefix), b"")
    minor = system_minor()
    lib = "lib/python%s/site-packages" % minor
    listed = ["d\tbin", "f\tpyvenv.cfg", "l\tbin/python3\t/usr/bin/python3",
              "l\tbin/python\t/usr/bin/python3", "d\tlib", "d\tlib/python" + minor, "d\t" + lib,
              "p\t%s/qgrey" % lib, "f\tbin/qgrey", "f\tbin/qgrey-data", "f\tbin/qgrey-admin",
              "f\tbin/qgrey-expire", "f\tbin/qgrey-report", "d\tshare", "d\tshare/man",
              "d\tshare/man/man8"]
    listed += ["f\tshare/man/man8/" + page for page in PAGES]
    listed += ["L\t%s/%s\t%s/bin/%s" % (bin_dir, name, prefix, name) for name in
               ["qgrey", "qgrey-data", "qgrey-admin", "qgrey-expire", "qgrey-report"]]
    listed += ["L\t%s/share/man/man8/%s\t%s/share/man/man8/%s" % (base, page, prefix, page)
               for page in PAGES]
    with open(os.path.join(prefix, ".qgrey-install")) as f:
        assert [line for line in f.read().splitlines() if not line.startswith("#")] == listed
    assert sorted(os.listdir(prefix)) == [".qgrey-install", "bin", "lib", "pyvenv.cfg", "share"]
    assert sorted(os.listdir(os.path.join(prefix, "bin"))) == ["python", "python3"] + COMMANDS
    assert os.readlink(os.path.join(prefix, "bin", "python3")) == "/usr/bin/python3"
    with open(os.path.join(prefix, "pyvenv.cfg")) as f:
        assert f.read().splitlines()[:2] == ["home = /usr/bin", "include-system-site-packages = false"]
    with open(os.path.join(prefix, "bin", "qgrey-expire")) as f:
        assert f.readline() == "#!%s/bin/python3 -IS\n" % prefix
    for directory, subdirectories, names in os.walk(prefix):
        assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o755, directory
        for name in names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                want = 0o755 if directory.endswith("/bin") else 0o644
                assert (stat.S_IMODE(st.st_mode), st.st_uid) == (want, 0), path
    # Compiled, since the qmail user cannot write bytecode there.
    cache = os.path.join(prefix, lib, "qgrey", "__pycache__")
    assert "plugin.cpython-%s.pyc" % minor.replace(".", "") in os.listdir(cache)
    assert sorted(os.listdir(bin_dir)) == COMMANDS
    assert os.readlink(os.path.join(bin_dir, "qgrey")) == prefix + "/bin/qgrey"
    assert sorted(os.listdir(os.path.join(base, "share", "man", "man8"))) == PAGES
    assert decide(bin_dir, base) == (0, GREYLISTED, NEW)
    # Root's tools leave bytecode in the package: it is the installer's own.
    assert subprocess.run([os.path.join(bin_dir, "qgrey-admin"), "--help"],
                          capture_output=True).returncode == 0
    assert outcome(install(source, "--prefix", prefix, "--bin", bin_dir)) == (
        0, installed(prefix), b"")
    assert decide(bin_dir, base) == (0, GREYLISTED, NEW)


def test_an_entry_the_installer_did_not_write_is_refused(base, source):
    """A root-owned prefix of an earlier install, in which a link was
    planted (while it was writable, or by a mistake): refused, untouched."""
    prefix, bin_dir = os.path.join(base, "opt"), os.path.join(base, "bin")
    assert install(source, "--prefix", prefix, "--bin", bin_dir).returncode == 0
    shadow, _, _ = root_only_files(base)
    planted = os.path.join(prefix, "bin", "qgrey-admin.new")
    os.symlink(shadow, planted)
    before = snapshot(base)
    assert outcome(install(source, "--prefix", prefix, "--bin", bin_dir)) == refused(
        "--prefix %s: %s was not written by qgrey.install (not listed in %s/.qgrey-install): "
        "remove it or choose another --prefix" % (prefix, planted, prefix))
    assert snapshot(base) == before
    os.unlink(planted)
    os.unlink(os.path.join(bin_dir, "qgrey-report"))
    with open(os.path.join(bin_dir, "qgrey-report"), "w") as f:
        f.write("#!/bin/sh\n")
    before = snapshot(base)
    assert outcome(install(source, "--prefix", prefix, "--bin", bin_dir)) == refused(
        "--bin %s: %s/qgrey-report exists and was not written by qgrey.install: remove it or "
        "choose another --bin" % (bin_dir, bin_dir))
    assert snapshot(base) == before


def test_existing_directory_with_other_content_is_refused(base, source):
    prefix = os.path.join(base, "opt")
    os.makedirs(os.path.join(prefix, "lib"))
    before = snapshot(base)
    assert outcome(install(source, "--prefix", prefix, "--bin", "")) == refused(
        "--prefix %s: %s/lib was not written by qgrey.install (not listed in %s/.qgrey-install): "
        "remove it or choose another --prefix" % (prefix, prefix, prefix))
    assert snapshot(base) == before


def other_pythons():
    """Pythons >= 3.9 of a version manager under root's home, other than the
    system's version (reproduction 8 used one)."""
    minor = system_minor()
    found = []
    for path in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))):
        version = os.path.basename(os.path.dirname(os.path.dirname(path))).split(".")
        if len(version) >= 2 and version[1].isdigit() and int(version[1]) >= 9 \
                and "%s.%s" % tuple(version[:2]) != minor:
            found.append(path)
    return found


def test_upgrade_from_an_earlier_install_with_roots_own_python(base, source):
    """Reproduction 8: an install made (as the installer did before it kept
    a list) with root's python3 from a version manager under /root, then
    the same command with /usr/bin/python3: bin/python3 replaced, the other
    site-packages removed, nothing else left of the old environment."""
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no Python of another version under ~/.pyenv to make the earlier install with")
    python = pythons[-1]
    prefix, bin_dir = os.path.join(base, "opt"), os.path.join(base, "bin")
    subprocess.run([python, "-m", "venv", "--without-pip", "--symlinks", prefix], check=True)
    old = site_packages(prefix)
    assert len(old) == 1 and not old[0].startswith("lib/python%s/" % system_minor())
    shutil.copytree(os.path.join(source, "qgrey"), os.path.join(prefix, old[0], "qgrey"))
    os.makedirs(os.path.join(prefix, "share", "man", "man8"))
    os.makedirs(os.path.join(base, "share", "man", "man8"))
    for page in PAGES:
        shutil.copy(os.path.join(source, "man", page), os.path.join(prefix, "share", "man", "man8"))
        os.symlink(os.path.join(prefix, "share", "man", "man8", page),
                   os.path.join(base, "share", "man", "man8", page))
    os.mkdir(bin_dir)
    for name in ("qgrey", "qgrey-data", "qgrey-admin", "qgrey-expire", "qgrey-report"):
        with open(os.path.join(prefix, "bin", name), "w") as f:
            f.write("#!%s/bin/python3 -IS\nimport sys\nsys.path.insert(0, %r)\n"
                    % (prefix, os.path.join(prefix, old[0])))
        os.chmod(os.path.join(prefix, "bin", name), 0o755)
        os.symlink(os.path.join(prefix, "bin", name), os.path.join(bin_dir, name))
    assert os.readlink(os.path.join(prefix, "bin", "python3")).startswith(os.path.expanduser("~/"))
    home = os.path.expanduser("~")
    if stat.S_IMODE(os.stat(home).st_mode) == 0o700:
        before = snapshot(base)
        done = install(source, "--prefix", prefix, "--bin", bin_dir, "--python", python)
        assert outcome(done) == refused(
            "--python %s: %s is not reachable by other users (mode 0700): the qmail user could "
            "not run it; choose one it can run, such as /usr/bin/python3" % (python, home))
        assert snapshot(base) == before

    # The same command, run by root's python3: the system's is used.
    done = install(source, "--prefix", prefix, "--bin", bin_dir, python=python)
    assert outcome(done) == (0, installed(prefix), b"")
    assert os.readlink(os.path.join(prefix, "bin", "python3")) == "/usr/bin/python3"
    assert site_packages(prefix) == ["lib/python%s/site-packages" % system_minor()]
    assert sorted(os.listdir(prefix)) == [".qgrey-install", "bin", "lib", "pyvenv.cfg", "share"]
    assert sorted(os.listdir(os.path.join(prefix, "bin"))) == ["python", "python3"] + COMMANDS
    assert decide(bin_dir, base) == (0, GREYLISTED, NEW)


def test_upgrade_from_an_install_made_with_another_interpreter(base, source):
    """An install with --python (a copy of the system's interpreter
    elsewhere), then the default: bin/python3 -> /usr/bin/python3, and what
    an install for another Python version listed is removed."""
    other = os.path.join(base, "python", "bin")
    os.makedirs(other)
    shutil.copy2(os.path.realpath(SYSTEM_PYTHON), os.path.join(other, "python3"))
    prefix, bin_dir = os.path.join(base, "opt"), os.path.join(base, "bin")
    done = install(source, "--prefix", prefix, "--bin", bin_dir, "--python",
                   os.path.join(other, "python3"))
    assert outcome(done) == (0, installed(prefix), b"")
    assert os.readlink(os.path.join(prefix, "bin", "python3")) == other + "/python3"
    assert decide(bin_dir, base) == (0, GREYLISTED, NEW)
    # As a Python 3.9 would have left it: its site-packages, listed as such.
    minor = system_minor()
    os.rename(os.path.join(prefix, "lib", "python" + minor), os.path.join(prefix, "lib", "python3.9"))
    manifest = os.path.join(prefix, ".qgrey-install")
    with open(manifest) as f:
        text = f.read()
    with open(manifest, "w") as f:
        f.write(text.replace("\tlib/python%s" % minor, "\tlib/python3.9"))
    # An upgrade that stops half way (a directory it cannot write), then
    # the same command again.
    man = os.path.join(prefix, "share", "man", "man8")
    with read_only(man):
        done = install(source, "--prefix", prefix, "--bin", bin_dir)
    assert outcome(done) == (111, b"", ("qgrey.install: fatal: Operation not permitted: %s\n"
                                        % man).encode())
    assert os.readlink(os.path.join(prefix, "bin", "python3")) == "/usr/bin/python3"
    assert sorted(os.listdir(os.path.join(prefix, "lib"))) == ["python" + minor, "python3.9"]

    done = install(source, "--prefix", prefix, "--bin", bin_dir)
    assert outcome(done) == (0, installed(prefix), b"")
    assert os.readlink(os.path.join(prefix, "bin", "python3")) == "/usr/bin/python3"
    assert os.readlink(os.path.join(prefix, "bin", "python")) == "/usr/bin/python3"
    assert site_packages(prefix) == ["lib/python%s/site-packages" % minor]
    assert os.listdir(os.path.join(prefix, "lib")) == ["python" + minor]
    with open(manifest) as f:
        text = f.read()
    assert "python3.9" not in text and other not in text
    assert decide(bin_dir, base) == (0, GREYLISTED, NEW)


def test_interpreter_other_users_cannot_reach_is_refused(base, source):
    """Reproduction 8: root's python3 under a 0700 directory (as /root is)."""
    private = os.path.join(base, "private")
    os.mkdir(private, 0o700)
    os.symlink(SYSTEM_PYTHON, os.path.join(private, "python3"))
    prefix = os.path.join(base, "opt")
    done = install(source, "--prefix", prefix, "--python", os.path.join(private, "python3"))
    assert outcome(done) == refused(
        "--python %s/python3: %s is not reachable by other users (mode 0700): the qmail user "
        "could not run it; choose one it can run, such as /usr/bin/python3" % (private, private))
    assert not os.path.lexists(prefix)


def test_interpreter_another_user_can_change_is_refused(base, source):
    script = nobodys_script(base)
    prefix = os.path.join(base, "opt")
    done = install(source, "--prefix", prefix, "--python", script)
    assert outcome(done) == refused(
        "--python %s: %s belongs to uid 65534, not to root: another user could change what "
        "root and the qmail user run" % (script, script))
    assert not os.path.lexists(prefix) and not os.path.exists(os.path.join(base, "ran"))


def test_launcher_replaces_planted_links(base, source):
    """python3 -m qgrey.launcher PATH, with PATH and PATH.new links to a
    root-only file: the links are replaced, the file untouched."""
    shadow, config, _ = root_only_files(base)
    path = os.path.join(base, "qgrey")
    os.symlink(shadow, path)
    os.symlink(config, path + ".new")
    done = subprocess.run([SYSTEM_PYTHON, "-m", "qgrey.launcher", path], cwd=source,
                          capture_output=True)
    assert outcome(done) == (0, (path + "\n").encode(), b"")
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    with open(path) as f:
        assert f.readline() == "#!/usr/bin/python3 -IS\n"
    for name in ("shadow", "config"):
        with open(os.path.join(base, "secret", name)) as f:
            assert f.read() == "root only: %s\n" % name
    assert sorted(os.listdir(base)) == ["qgrey", "qgrey.new", "secret", "src"]
    assert decide(base, base) == (0, GREYLISTED, NEW)


def test_an_ordinary_user_installs_in_its_own_directory(base, source):
    """Run by another user than root, that user is trusted as well as root;
    a third one is not; a directory it cannot write fails before writing."""
    home = os.path.join(base, "home")
    os.mkdir(home, 0o755)
    os.chown(home, NOBODY, NOBODY)
    prefix, bin_dir = os.path.join(home, "opt"), os.path.join(home, "bin")
    done = install(source, "--prefix", prefix, "--bin", bin_dir, user=NOBODY)
    assert outcome(done) == (0, installed(prefix), b"")
    assert os.lstat(os.path.join(prefix, "bin", "qgrey")).st_uid == NOBODY
    assert decide(bin_dir, base) == (0, GREYLISTED, NEW)
    os.chown(home, 1, 1)
    done = install(source, "--prefix", prefix, "--bin", bin_dir, user=NOBODY)
    assert outcome(done) == refused("--prefix %s: %s belongs to uid 1, not to root or uid 65534: %s"
                                    % (prefix, home, OTHERS))
    os.chown(home, 0, 0)
    done = install(source, "--prefix", os.path.join(home, "new"), "--bin", "", user=NOBODY)
    assert outcome(done) == (111, b"", ("qgrey.install: fatal: Permission denied: %s\n"
                                        % home).encode())
    assert sorted(os.listdir(home)) == ["bin", "opt", "share"]


def test_below_a_sticky_directory(base, source):
    """Below a directory like /tmp (others may write it, but not replace
    what root made there) a prefix is made; such a directory itself is no
    prefix."""
    sticky = os.path.join(base, "tmp")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    prefix = os.path.join(sticky, "new", "qgrey")
    assert outcome(install(source, "--prefix", prefix, "--bin", "")) == (0, installed(prefix), b"")
    assert stat.S_IMODE(os.lstat(os.path.dirname(prefix)).st_mode) == 0o755
    assert outcome(install(source, "--prefix", sticky, "--bin", "")) == refused(
        "--prefix %s: %s is writable by group or others (mode 1777): %s" % (sticky, sticky, OTHERS))
