"""python3 -m qgrey.install, run from where qgrey is installed, on what it
must refuse in one line before writing anything (exit status 100), and its
usage error: interpreters that are not what they claim, paths that cannot
be resolved safely, prefixes holding what it did not write, links it
would replace. Each expected line is written out."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import NOBODY, needs_root

USAGE = b"usage: python3 -m qgrey.install [--prefix DIR] [--bin DIR] [--python PATH]\n"
CHANGE = "another user could change what root and the qmail user run"
MANIFEST_HEAD = ("# Written by python3 -m qgrey.install: what it wrote, one entry a line:\n"
                 "# kind (d directory, f file, l link, p package directory, L link outside\n"
                 "# the prefix), tab, path, and for a link: tab, target.\n")
BAD_PREFIX = "/nonexistent-qgrey\tprefix"  # refused after the interpreter's checks
BAD_BIN = "/nonexistent-qgrey\tbin"  # refused after the prefix's checks


@pytest.fixture(autouse=True)
def umask():
    """The modes asked for, whatever umask the run has."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def base():
    """A directory of root's that other users can reach."""
    needs_root()
    path = tempfile.mkdtemp(prefix="qgrey-cov-install-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def install(*args):
    """Every run names a prefix and a bin directory that are refused
    unless the test gives its own: a refusal that failed to come would
    still write nothing in /opt/qgrey or /usr/local/bin."""
    args = ["--prefix", BAD_PREFIX, "--bin", BAD_BIN] + list(args)
    done = subprocess.run([sys.executable, "-m", "qgrey.install"] + args, cwd="/",
                          env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def refused(line):
    return (100, b"", ("qgrey.install: refused: %s\n" % line).encode())


def tab_prefix_refused():
    return refused("--prefix %r: a tab or line end in the path" % BAD_PREFIX)


def script(path, text, mode=0o755):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def listing(top):
    return sorted(os.path.relpath(os.path.join(d, n), top)
                  for d, subdirectories, names in os.walk(top) for n in subdirectories + names)


@pytest.mark.parametrize("args", [["--prefix"], ["--bin", "/x", "--python"], ["--verbose", "x"],
                                  ["/opt/qgrey"]])
def test_usage_error(args):
    assert install(*args) == (100, b"", USAGE)


def test_interpreter_paths_that_cannot_be_used(base):
    missing = base + "/missing/python3"
    assert install("--python", missing) == refused("--python %s: no such file" % missing)
    assert install("--python", "/usr/bin") == refused("--python /usr/bin: /usr/bin is not a regular file")
    assert install("--python", "/etc/passwd/python3") == refused(
        "--python /etc/passwd/python3: not a directory")
    loop = base + "/loop"
    os.symlink(loop, loop)
    assert install("--python", loop) == refused("--python %s: too many levels of symbolic links" % loop)
    tabbed = base + "/a\tb"
    assert install("--python", tabbed) == refused("--python %r: a tab or line end in the path" % tabbed)
    assert listing(base) == ["loop"]


@pytest.mark.parametrize("mode, owner, why", [
    (0o775, 0, "%(p)s is writable by group or others (mode 0775): " + CHANGE),
    (0o750, 0, "%(p)s is not executable by other users (mode 0750): the qmail user could not run "
               "it; choose one it can run, such as /usr/bin/python3"),
    (0o755, NOBODY, "%(p)s belongs to uid 65534, not to root: " + CHANGE),
])
def test_an_interpreter_others_could_change_or_cannot_run(base, mode, owner, why):
    path = script(base + "/python3", "#!/bin/sh\nexit 0\n", mode)
    os.chown(path, owner, owner)
    assert install("--python", path) == refused("--python %s: " % path + why % {"p": path})


def test_a_program_that_is_not_python(base):
    garbage = script(base + "/garbage", "\x7fELF-not-really\n")
    assert install("--python", garbage) == refused(
        "--python %s: cannot be run by another user (uid 65534): [Errno 8] Exec format error: %r"
        % (garbage, garbage))
    fails = script(base + "/fails", "#!/bin/sh\necho one >&2\necho 'the last\ttab' >&2\nexit 3\n")
    assert install("--python", fails) == refused(
        "--python %s: cannot be run by another user (uid 65534) as Python 3.9 or later "
        "(exit status 3: the last?tab)" % fails)
    silent = script(base + "/silent", "#!/bin/sh\necho 3.11\n")
    assert install("--python", silent) == refused(
        "--python %s: cannot be run by another user (uid 65534) as Python 3.9 or later "
        "(exit status 0)" % silent)
    old = script(base + "/old", "#!/bin/sh\nprintf '3.8.18\\n/usr/lib/python3.8\\n'\n")
    assert install("--python", old) == refused("--python %s: Python 3.8.18; qgrey needs 3.9 or later"
                                               % old)


def test_an_interpreter_whose_library_others_could_change(base):
    os.mkdir(base + "/bin", 0o755)
    os.mkdir(base + "/lib", 0o755)
    os.mkdir(base + "/lib/python3.11")
    os.chmod(base + "/lib/python3.11", 0o777)
    python = script(base + "/bin/python3", "#!/bin/sh\nexit 0\n")
    assert install("--python", python) == refused(
        "--python %s: %s/lib/python3.11 is writable by group or others (mode 0777): %s"
        % (python, base, CHANGE))


def test_the_library_the_interpreter_names(base):
    loop = base + "/loop"
    os.symlink(loop, loop)
    says_loop = script(base + "/says-loop", "#!/bin/sh\nprintf '3.11.2\\n%s/lib\\n'\n" % loop)
    assert install("--python", says_loop) == refused(
        "--python %s: %s/lib: too many levels of symbolic links" % (says_loop, loop))
    # A library that does not exist is not checked; the install goes on to the prefix.
    says_missing = script(base + "/says-missing",
                          "#!/bin/sh\nprintf '3.11.2\\n/nonexistent-qgrey/lib\\n'\n")
    assert install("--python", says_missing, "--prefix", BAD_PREFIX) == tab_prefix_refused()


def test_interpreter_paths_with_dot_dot_and_absolute_links(base):
    # /usr/bin/../bin/python3, and a link with an absolute target, resolve
    # to Debian's Python: accepted, and the install goes on to the prefix.
    assert install("--python", "/usr/bin/../bin/python3", "--prefix", BAD_PREFIX) == \
        tab_prefix_refused()
    os.symlink("/usr/bin/python3", base + "/python3")
    assert install("--python", base + "/python3", "--prefix", BAD_PREFIX) == tab_prefix_refused()


def test_prefixes_that_cannot_be_used(base):
    assert install("--prefix", "/etc/passwd") == refused("--prefix /etc/passwd: /etc/passwd is not a directory")
    # A link to ".." below a missing directory: the kernel would refuse it too.
    dotted = base + "/dotted"
    os.symlink("missing/../prefix", dotted)
    assert install("--prefix", dotted) == refused("--prefix %s: No such file or directory" % dotted)
    assert install("--prefix", base + "/p", "--bin", base + "/p/bin") == refused(
        "--bin %s/p/bin: inside the prefix %s/p, or the prefix inside it" % (base, base))
    assert install("--prefix", base + "/p/q", "--bin", base + "/p") == refused(
        "--bin %s/p: inside the prefix %s/p/q, or the prefix inside it" % (base, base))
    assert install("--prefix", base + "/p") == refused(
        "--bin %r: a tab or line end in the path" % BAD_BIN)
    assert listing(base) == ["dotted"]


def prefix_with(base, manifest=None, mode=0o644):
    prefix = base + "/prefix"
    os.mkdir(prefix, 0o755)
    if manifest is not None:
        with open(prefix + "/.qgrey-install", "w") as f:
            f.write(manifest)
        os.chmod(prefix + "/.qgrey-install", mode)
    return prefix


@pytest.mark.parametrize("line", ["x\tbin", "d\t/bin", "l\tbin/python3", "L\trelative\t/x",
                                  "d\tlib/../etc", "d\tlib//x", "f", "dd\tbin"])
def test_a_manifest_line_the_installer_never_writes(base, line):
    prefix = prefix_with(base, MANIFEST_HEAD + "d\tbin\n" + line + "\n")
    before = listing(base)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/.qgrey-install, line 5: not a line qgrey.install writes" % (prefix, prefix))
    assert listing(base) == before


def test_a_manifest_others_could_change_or_not_a_file(base):
    prefix = prefix_with(base, MANIFEST_HEAD, mode=0o666)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/.qgrey-install is writable by group or others (mode 0666)" % (prefix, prefix))
    os.unlink(prefix + "/.qgrey-install")
    os.mkdir(prefix + "/.qgrey-install")
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/.qgrey-install: not a regular file" % (prefix, prefix))
    os.rmdir(prefix + "/.qgrey-install")
    with open(prefix + "/.qgrey-install", "w") as f:
        f.write(MANIFEST_HEAD)
    os.chown(prefix + "/.qgrey-install", NOBODY, NOBODY)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/.qgrey-install: owned by uid 65534, not by root or the directory's owner"
        % (prefix, prefix))


def test_what_a_listed_prefix_may_hold(base):
    prefix = prefix_with(base, MANIFEST_HEAD + "d\tbin\np\tlib/python3.11/site-packages/qgrey\n"
                         "d\tlib\nd\tlib/python3.11\nd\tlib/python3.11/site-packages\n")
    os.makedirs(prefix + "/lib/python3.11/site-packages/qgrey/sub", 0o755)
    os.mkdir(prefix + "/bin", 0o755)
    # A temporary an interrupted install left is allowed (and removed later).
    open(prefix + "/bin/.qgrey.0123456789abcdef.tmp", "w").close()
    os.chown(prefix + "/bin", NOBODY, NOBODY)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/bin belongs to uid 65534, not to root" % (prefix, prefix))
    os.chown(prefix + "/bin", 0, 0)
    os.chmod(prefix + "/bin", 0o775)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/bin is writable by group or others (mode 0775)" % (prefix, prefix))
    os.chmod(prefix + "/bin", 0o755)
    package = prefix + "/lib/python3.11/site-packages/qgrey"
    os.chmod(package + "/sub", 0o777)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/sub is writable by group or others (mode 0777)" % (prefix, package))
    os.chmod(package + "/sub", 0o755)
    open(package + "/sub/x.py", "w").close()
    os.chown(package + "/sub/x.py", NOBODY, NOBODY)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/sub/x.py belongs to uid 65534, not to root" % (prefix, package))
    os.chown(package + "/sub/x.py", 0, 0)
    # A FIFO is of no kind the installer writes.
    os.mkfifo(prefix + "/bin/fifo")
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/bin/fifo was not written by qgrey.install (not listed in %s/.qgrey-install): "
        "remove it or choose another --prefix" % (prefix, prefix, prefix))
    assert not os.path.exists(base + "/links")


def test_what_an_install_before_the_manifest_may_hold(base):
    prefix = prefix_with(base)
    os.makedirs(prefix + "/lib/python3.9/site-packages/qgrey", 0o755)
    os.mkdir(prefix + "/bin", 0o755)
    with open(prefix + "/pyvenv.cfg", "w") as f:
        f.write("home = /usr/bin\n")
    os.symlink("python3", prefix + "/bin/python")
    # bin/activate is a venv's file: a directory of that name is not.
    os.mkdir(prefix + "/bin/activate", 0o755)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/bin/activate was not written by qgrey.install (not listed in "
        "%s/.qgrey-install): remove it or choose another --prefix" % (prefix, prefix, prefix))
    os.rmdir(prefix + "/bin/activate")
    open(prefix + "/bin/unknown", "w").close()
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/bin/unknown was not written by qgrey.install (not listed in "
        "%s/.qgrey-install): remove it or choose another --prefix" % (prefix, prefix, prefix))


def test_a_link_it_would_replace_that_it_did_not_write(base):
    prefix = base + "/prefix"
    links = base + "/links"
    os.mkdir(links, 0o755)
    open(links + "/qgrey-admin", "w").close()
    assert install("--prefix", prefix, "--bin", links) == refused(
        "--bin %s: %s/qgrey-admin exists and was not written by qgrey.install: remove it or "
        "choose another --bin" % (links, links))
    os.unlink(links + "/qgrey-admin")
    os.symlink("/usr/bin/true", links + "/qgrey-admin")
    assert install("--prefix", prefix, "--bin", links) == refused(
        "--bin %s: %s/qgrey-admin exists and was not written by qgrey.install: remove it or "
        "choose another --bin" % (links, links))
    assert listing(base) == ["links", "links/qgrey-admin"]


def test_an_interpreter_in_a_directory_others_cannot_search(base):
    os.mkdir(base + "/private", 0o750)
    os.symlink("/usr/bin/python3", base + "/private/python3")
    assert install("--python", base + "/private/python3") == refused(
        "--python %s/private/python3: %s/private is not reachable by other users (mode 0750): the "
        "qmail user could not run it; choose one it can run, such as /usr/bin/python3" % (base, base))


def test_a_link_whose_target_climbs_with_dot_dot(base):
    os.symlink("/usr/bin/../bin/python3", base + "/python3")
    assert install("--python", base + "/python3", "--prefix", BAD_PREFIX) == tab_prefix_refused()


def test_a_prefix_with_content_but_neither_manifest_nor_venv(base):
    prefix = prefix_with(base)
    os.mkdir(prefix + "/bin", 0o755)
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/bin was not written by qgrey.install (not listed in %s/.qgrey-install): "
        "remove it or choose another --prefix" % (prefix, prefix, prefix))


def test_an_install_before_the_manifest_with_something_else_deeper(base):
    prefix = prefix_with(base)
    os.makedirs(prefix + "/lib/python3.9/site-packages/qgrey", 0o755)
    os.makedirs(prefix + "/share/man/man8", 0o755)
    with open(prefix + "/pyvenv.cfg", "w") as f:
        f.write("home = /usr/bin\n")
    open(prefix + "/share/man/man8/other.8", "w").close()
    assert install("--prefix", prefix, "--bin", base + "/links") == refused(
        "--prefix %s: %s/share/man/man8/other.8 was not written by qgrey.install (not listed in "
        "%s/.qgrey-install): remove it or choose another --prefix" % (prefix, prefix, prefix))


COMMANDS = ["qgrey", "qgrey-data", "qgrey-admin", "qgrey-expire", "qgrey-report"]


def manifest_entries(prefix):
    with open(prefix + "/.qgrey-install") as f:
        return [line for line in f.read().splitlines() if not line.startswith("#")]


def test_install_then_upgrade_removes_what_it_no_longer_writes(base):
    import qgrey
    from conftest import SPP_ENV, spp
    pages = sorted(p for p in os.listdir(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(qgrey.__file__))), "man")) if p.endswith(".8")) \
        if os.path.isdir(os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(qgrey.__file__))), "man")) else []
    prefix, links = base + "/opt/qgrey", base + "/bin"
    done = install("--prefix", prefix, "--bin", links, "--python", "/usr/bin/python3")
    summary = ("installed in {p}/bin: qgrey qgrey-data qgrey-admin qgrey-expire qgrey-report\n"
               "control/smtpplugins: [rcpt] {p}/bin/qgrey  (with GL_STAGE=data also: [mail] "
               ":echo SQGREY_DATA=  [data] {p}/bin/qgrey-data)\n").format(p=prefix).encode()
    assert done == (0, summary, b"")
    assert sorted(os.listdir(links)) == sorted(COMMANDS)
    assert all(os.readlink(links + "/" + name) == prefix + "/bin/" + name for name in COMMANDS)
    assert sorted(os.listdir(prefix + "/bin")) == sorted(["python", "python3"] + COMMANDS)
    if pages:
        assert sorted(os.listdir(base + "/share/man/man8")) == pages
    first = manifest_entries(prefix)
    assert first[:4] == ["d\tbin", "f\tpyvenv.cfg", "l\tbin/python3\t/usr/bin/python3",
                         "l\tbin/python\t/usr/bin/python3"]
    # The installed plugin decides, run as the qmail user would.
    gl_dir = base + "/state"
    os.mkdir(gl_dir, 0o700)
    os.chown(gl_dir, NOBODY, NOBODY)
    result = spp(prefix + "/bin/qgrey", dict(SPP_ENV, GL_DIR=gl_dir), user=NOBODY)
    assert (result.returncode, result.stdout) == (
        0, b"E451 4.7.1 Greylisted, please try again later\n")

    # What an earlier install wrote and this one does not: a file, a
    # directory, a link outside the prefix still as it was written (removed),
    # and one changed since (left, with a warning).
    os.mkdir(prefix + "/old", 0o755)
    with open(prefix + "/old/tool", "w") as f:
        f.write("x")
    os.symlink(prefix + "/bin/qgrey-old", links + "/qgrey-old")
    os.symlink("/usr/bin/true", links + "/qgrey-older")
    os.mkdir(prefix + "/bin/.qgrey.0123456789abcdef.tmp")  # an interrupted install's
    # And a link already gone (nothing to say), and one in a directory that
    # others may write now (left, with a warning: it could be anyone's).
    os.mkdir(base + "/open")
    os.chmod(base + "/open", 0o777)
    os.symlink(prefix + "/bin/qgrey-x", base + "/open/qgrey-x")
    with open(prefix + "/.qgrey-install", "a") as f:
        f.write("d\told\nf\told/tool\nL\t%s/qgrey-old\t%s/bin/qgrey-old\n"
                "L\t%s/qgrey-older\t%s/bin/qgrey-older\n" % (links, prefix, links, prefix))
        f.write("L\t%s/gone\t%s/bin/gone\nL\t%s/open/qgrey-x\t%s/bin/qgrey-x\n"
                % (links, prefix, base, prefix))
    done = install("--prefix", prefix, "--bin", links, "--python", "/usr/bin/python3")
    warned = sorted(done[2].decode().splitlines())
    assert done[:2] == (0, summary)
    assert warned == sorted([
        "qgrey.install: warning: %s/open/qgrey-x, written by an earlier install, left alone" % base,
        "qgrey.install: warning: %s/qgrey-older, written by an earlier install, left alone" % links])
    assert os.readlink(base + "/open/qgrey-x") == prefix + "/bin/qgrey-x"
    assert not os.path.lexists(prefix + "/old")
    assert not os.path.lexists(links + "/qgrey-old")
    assert os.readlink(links + "/qgrey-older") == "/usr/bin/true"
    assert not os.path.lexists(prefix + "/bin/.qgrey.0123456789abcdef.tmp")
    assert manifest_entries(prefix) == first


def test_a_prefix_it_cannot_write(base):
    from conftest import read_only
    os.mkdir(base + "/ro", 0o700)
    prefix = base + "/ro/qgrey"
    with read_only(base + "/ro"):
        done = install("--prefix", prefix, "--bin", base + "/links", "--python", "/usr/bin/python3")
    assert done == (111, b"", (
        "qgrey.install: warning: %s/ro is not reachable by other users (mode 0700): the qmail "
        "user cannot run what is installed in %s\n"
        "qgrey.install: fatal: Permission denied: %s/ro\n" % (base, prefix, base)).encode())
    assert listing(base) == ["ro"]


def test_install_from_a_source_directory_with_its_man_pages_and_no_links(base):
    # As the README says: cd qgrey-X.Y && python3 -m qgrey.install. An empty
    # --bin links nothing.
    import qgrey
    top = os.path.dirname(os.path.dirname(os.path.abspath(qgrey.__file__)))
    man = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "man")
    source = base + "/src"
    shutil.copytree(os.path.join(top, "qgrey"), source + "/qgrey",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(man, source + "/man")
    pages = sorted(p for p in os.listdir(source + "/man") if p.endswith(".8"))
    assert pages == ["qgrey-admin.8", "qgrey-expire.8", "qgrey-report.8", "qgrey.8"]
    prefix = base + "/opt"
    done = subprocess.run([sys.executable, "-m", "qgrey.install", "--prefix", prefix, "--bin", "",
                           "--python", "/usr/bin/python3"], cwd=source,
                          env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, b"")
    assert sorted(os.listdir(prefix + "/share/man/man8")) == pages
    for page in pages:
        with open(prefix + "/share/man/man8/" + page, "rb") as installed, \
                open(source + "/man/" + page, "rb") as original:
            assert installed.read() == original.read()
    entries = manifest_entries(prefix)
    assert [e for e in entries if e.startswith("L")] == []
    assert ["f\tshare/man/man8/" + page for page in pages] == [
        e for e in entries if e.startswith("f\tshare/")]
    assert sorted(os.listdir(base)) == ["opt", "src"]
