"""qgrey-admin check --user: each mistake that made qgrey stop working
while check said ok, made real on a site of its own (launchers written for
/usr/bin/python3, a copy of qgrey nobody can read, GL_DIR owned by nobody,
a control/smtpplugins), with the exact problem line and exit status 1; and
the exact ok line, exit 0, when all is right. nobody stands in for qmaild.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import NOBODY, SPP_ENV, needs_root, spp

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
MAIL_LINE = ":echo SQGREY_DATA="
FAILED = "qgrey will not work as it should: %d problem%s\n"


def failed(count):
    return FAILED % (count, "" if count == 1 else "s")


class Site:
    """A qgrey installation in base: bin/qgrey, bin/qgrey-data, lib/qgrey,
    control/smtpplugins, and GL_DIR state/ owned by nobody."""

    def __init__(self, base):
        self.base = base
        self.rcpt = base + "/bin/qgrey"
        self.data = base + "/bin/qgrey-data"
        self.gl_dir = base + "/state"
        self.plugins = base + "/control/smtpplugins"

    def write_plugins(self, text):
        with open(self.plugins, "w") as f:
            f.write(text)
        os.chmod(self.plugins, 0o644)

    def plugins_text(self, stage="data"):
        if stage == "rcpt":
            return "[rcpt]\n%s\n" % self.rcpt
        return "[mail]\n%s\n[rcpt]\n%s\n[data]\n%s\n" % (MAIL_LINE, self.rcpt, self.data)

    def check(self, *args, user="nobody", stage="data", **env):
        environment = {"PATH": "/usr/bin:/bin", "GL_DIR": self.gl_dir, "GL_STAGE": stage}
        environment.update(env)
        command = [os.path.join(BIN, "qgrey-admin"), "check", "--smtpplugins", self.plugins]
        if user is not None:
            command += ["--user", user]
        return subprocess.run(command + list(args), env=environment, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=60)

    def ok(self, result):
        assert (result.returncode, result.stdout, result.stderr) == (
            0, "ok: GL_DIR=%s GL_STORE=sqlite\n" % self.gl_dir, ""), result

    def problems(self, result, *lines):
        """The exact problem lines, and exit status 1."""
        assert result.stderr == "", result.stderr
        assert result.stdout == "".join("problem: %s\n" % line for line in lines) + failed(len(lines)), \
            result.stdout
        assert result.returncode == 1

    def chown_state(self):
        for top, dirs, files in os.walk(self.gl_dir):
            for name in dirs + files + ["."]:
                os.lchown(os.path.join(top, name), NOBODY, NOBODY)


@pytest.fixture
def site():
    needs_root()
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(PYTHON + " is missing")
    base = tempfile.mkdtemp(prefix="qgrey-check.", dir="/var/tmp")
    try:
        os.chmod(base, 0o755)
        s = Site(base)
        lib = base + "/lib"
        shutil.copytree(os.path.join(REPO, "qgrey"), lib + "/qgrey",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        os.mkdir(base + "/bin")
        os.mkdir(base + "/control")
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": lib}
        for args in ([s.rcpt], ["--data", s.data]):
            subprocess.run([PYTHON, "-m", "qgrey.launcher"] + args, check=True, env=env, cwd="/",
                           stdout=subprocess.DEVNULL)
        for top, dirs, files in os.walk(base):
            for name in dirs + files:
                path = os.path.join(top, name)
                os.chmod(path, 0o755 if os.path.isdir(path) or path.startswith(base + "/bin/")
                         else 0o644)
        os.mkdir(s.gl_dir, 0o700)
        os.chown(s.gl_dir, NOBODY, NOBODY)
        s.write_plugins(s.plugins_text())
        # The plugin has run once, as nobody: GL_DIR holds its database.
        result = spp(s.rcpt, dict(SPP_ENV, GL_DIR=s.gl_dir), user=NOBODY)
        assert result.stdout == b"E451 4.7.1 Greylisted, please try again later\n", result
        yield s
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_all_right(site):
    site.ok(site.check())
    site.ok(site.check(GL_PRIVACY="1"))  # GL_PRIVACY=1: the plugin makes the salt
    site.write_plugins(site.plugins_text("rcpt"))
    site.ok(site.check(stage="rcpt"))
    # Without --user (root, GL_DIR belongs to nobody): checked as nobody all the same.
    site.ok(site.check(user=None, stage="rcpt"))


def test_interpreter_in_a_directory_the_user_cannot_search(site):
    """The launchers name an interpreter in a 0700 directory: as nobody,
    every run fails to start (qmail-spp's 451 can't execute at RCPT; at
    DATA /bin/sh runs, its exec fails, and the message goes through)."""
    private = site.base + "/private"
    os.mkdir(private, 0o700)
    os.symlink(PYTHON, private + "/python3")
    for path in (site.rcpt, site.data):
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(PYTHON + " ", private + "/python3 "))
    with pytest.raises(PermissionError):  # how qmail-spp's execv fails, as nobody
        spp(site.rcpt, dict(SPP_ENV, GL_DIR=site.gl_dir), user=NOBODY)
    result = spp(site.data, dict(SPP_ENV, GL_DIR=site.gl_dir, QGREY_DATA="1,1,1,0,-,new,mail"),
                 user=NOBODY)
    assert result.stdout == b"" and result.returncode == 126  # no 451: accepted
    site.problems(
        site.check(),
        "the interpreter {p}/python3 of the launcher {r} ([rcpt]) cannot be run by nobody ({p} "
        "is not searchable by nobody): qmail-smtpd would answer every RCPT with 451 qmail-spp "
        "failure; fix: chmod a+x {p}, or write the launcher again with an interpreter nobody can "
        "run (/usr/bin/python3 -m qgrey.install)".format(p=private, r=site.rcpt),
        "the interpreter {p}/python3 of the launcher {d} ([data]) cannot be run by nobody ({p} "
        "is not searchable by nobody): every message would be accepted unchecked at DATA; fix: "
        "chmod a+x {p}, or write the launcher again with an interpreter nobody can run "
        "(/usr/bin/python3 -m qgrey.install)".format(p=private, d=site.data))
    os.chmod(private, 0o755)
    site.ok(site.check())


def test_interpreter_or_launcher_not_executable(site):
    own = site.base + "/python3"
    shutil.copy(PYTHON, own)
    os.chmod(own, 0o700)
    with open(site.rcpt) as f:
        text = f.read()
    with open(site.rcpt, "w") as f:
        f.write(text.replace("#!" + PYTHON + " ", "#!" + own + " "))
    os.chmod(site.data, 0o744)
    site.problems(
        site.check(),
        "the interpreter %s of the launcher %s ([rcpt]) is not executable by nobody: qmail-smtpd "
        "would answer every RCPT with 451 qmail-spp failure; fix: chmod a+rx %s, or write the "
        "launcher again with an interpreter nobody can run (/usr/bin/python3 -m qgrey.install)"
        % (own, site.rcpt, own),
        "the launcher %s ([data]) is not executable by nobody: every message would be accepted "
        "unchecked at DATA; fix: chmod a+rx %s" % (site.data, site.data))
    os.chmod(own, 0o755)
    os.chmod(site.data, 0o755)
    site.ok(site.check())


def test_qgrey_not_readable(site):
    os.chmod(site.base + "/lib/qgrey", 0o700)
    problem = ("qgrey in {l}, which the launcher {x} ([{s}]) imports, is not readable by nobody: "
               "{c}; fix: chmod a+x {l}/qgrey")
    site.problems(
        site.check(),
        problem.format(l=site.base + "/lib", x=site.rcpt, s="rcpt",
                       c="qmail-smtpd would answer every RCPT with 451 qmail-spp failure"),
        problem.format(l=site.base + "/lib", x=site.data, s="data",
                       c="every message would be accepted unchecked at DATA"))


def test_config_only_root_can_read(site):
    """GL_DIR/config root-owned 0600: the plugin, as nobody, cannot read it
    and runs on the defaults."""
    config = site.gl_dir + "/config"
    with open(config, "w") as f:
        f.write("GL_DELAY=10m\n")
    os.chmod(config, 0o600)
    result = spp(site.rcpt, dict(SPP_ENV, GL_DIR=site.gl_dir, SMTPRCPTTO="x@example.net"), user=NOBODY)
    assert b"cannot read %s: Permission denied; using the defaults" % config.encode() in result.stderr
    site.problems(
        site.check(),
        "%s is not readable by nobody (owner root, mode 0600), and the plugin runs on the "
        "defaults; fix: chown nobody %s" % (config, config))
    os.chmod(config, 0o644)  # root's and readable: the plugin reads it, but root wrote it
    site.problems(
        site.check(),
        "%s belongs to root, not to nobody who owns GL_DIR (did root write it?); fix: chown "
        "nobody %s" % (config, config))
    os.chown(config, NOBODY, NOBODY)
    site.ok(site.check())


def test_files_the_plugin_reads_that_are_not_regular_files(site):
    os.mkfifo(site.gl_dir + "/whitelist-clients")
    os.mkfifo(site.gl_dir + "/.whitelist-clients.cache")
    os.symlink(site.base + "/nothing", site.gl_dir + "/greytraps")
    os.symlink("/etc/hostname", site.gl_dir + "/whitelist-senders")  # root's: read through the link
    os.symlink(site.base + "/elsewhere", site.gl_dir + "/salt")
    site.chown_state()
    site.problems(
        site.check(GL_PRIVACY="1"),
        "%s/.whitelist-clients.cache is not a regular file (a FIFO); fix: remove it (the plugin "
        "writes the cache of a list again)" % site.gl_dir,
        "%s/greytraps is not a regular file (a symbolic link), and the plugin does not read it; "
        "fix: replace it with a regular file" % site.gl_dir,
        "%s/salt is not a regular file (a symbolic link), and the plugin does not read it; fix: "
        "replace it with a regular file" % site.gl_dir,
        "%s/whitelist-clients is not a regular file (a FIFO), and the plugin does not read it; "
        "fix: replace it with a regular file" % site.gl_dir)


def test_a_list_linked_to_another_users_file(site):
    other = site.base + "/list"
    with open(other, "w") as f:
        f.write("198.51.100.7\n")
    os.chown(other, 1, 1)  # daemon
    os.symlink(other, site.gl_dir + "/whitelist-clients")
    os.lchown(site.gl_dir + "/whitelist-clients", NOBODY, NOBODY)
    site.problems(
        site.check(),
        "%s/whitelist-clients is a link to a file of daemon's, and the plugin follows a link "
        "there only to a file of root's or nobody's; fix: chown nobody %s" % (site.gl_dir, other))


def test_group_writable_gl_dir(site):
    os.chmod(site.gl_dir, 0o770)
    site.problems(
        site.check(),
        "GL_DIR %s is writable by its group: another user could replace any file the plugin "
        "reads there, and the plugin refuses it (reason=directory); fix: chmod go-w %s"
        % (site.gl_dir, site.gl_dir))
    os.chmod(site.gl_dir, 0o703)
    site.problems(
        site.check(),
        "GL_DIR %s is writable by others: another user could replace any file the plugin "
        "reads there, and the plugin refuses it (reason=directory); fix: chmod go-w %s"
        % (site.gl_dir, site.gl_dir))


def test_a_file_root_wrote_in_gl_dir(site):
    """After root ran a tool as root: a root-owned lock and database."""
    for name in ("lock", "qgrey.sqlite"):
        os.chown(os.path.join(site.gl_dir, name), 0, 0)
    site.problems(
        site.check(),
        "%s/lock belongs to root, not to nobody who owns GL_DIR (did root write it?); fix: "
        "chown nobody %s/lock" % (site.gl_dir, site.gl_dir),
        "%s/qgrey.sqlite belongs to root, not to nobody who owns GL_DIR (did root write it?); "
        "fix: chown nobody %s/qgrey.sqlite" % (site.gl_dir, site.gl_dir))


# control/smtpplugins

@pytest.mark.parametrize("text, problems", [
    ("[mail]\n{m}\n[rcpt]\n{r}\n", [
        "GL_STAGE=data, but {f} lists no qgrey [data] entry: greylisted messages are accepted "
        "at DATA; fix: write it with python3 -m qgrey.launcher --data PATH (or python3 -m "
        "qgrey.install) and list it last under [data]"]),
    ("[rcpt]\n{r}\n[data]\n{d}\n", [
        "GL_STAGE=data, but {f} lacks the [mail] line :echo SQGREY_DATA=: a transaction can "
        "take the state of an earlier one; fix: add the line :echo SQGREY_DATA= last under [mail]"]),
    ("[rcpt]\n{r}\n", [
        "GL_STAGE=data, but {f} lists no qgrey [data] entry: greylisted messages are accepted "
        "at DATA; fix: write it with python3 -m qgrey.launcher --data PATH (or python3 -m "
        "qgrey.install) and list it last under [data]",
        "GL_STAGE=data, but {f} lacks the [mail] line :echo SQGREY_DATA=: a transaction can "
        "take the state of an earlier one; fix: add the line :echo SQGREY_DATA= last under [mail]"]),
    ("[mail]\n{m}\n/bin/check-sender\n[rcpt]\n{r}\n[data]\n{d}\n", [
        "the [mail] line :echo SQGREY_DATA= is listed before /bin/check-sender under [mail] in "
        "{f}: a MAIL that /bin/check-sender refuses empties the state of the transaction still "
        "open, and its greylisted recipients no longer hold the message; fix: list the line last "
        "under [mail]"]),
    ("[mail]\n{m}\n[rcpt]\n{r}\n[data]\n{d}\n/bin/check-message\n", [
        "qgrey's [data] entry is listed before /bin/check-message under [data] in {f}: a message "
        "that /bin/check-message refuses leaves qgrey's header for the next message of the "
        "connection; fix: list qgrey's [data] entry last under [data]"]),
    ("[mail]\n{m}\n[rcpt]\n{d}\n[data]\n{r}\n", [
        "{d}, qgrey's [data] launcher, is listed under [rcpt]; fix: list qgrey-data under [data] "
        "(GL_STAGE=data)",
        "{r}, qgrey's [rcpt] launcher, is listed under [data]; fix: list qgrey under [rcpt]",
        "{f} lists no qgrey launcher under [rcpt]: nothing is greylisted; fix: list the launcher "
        "(python3 -m qgrey.install writes /opt/qgrey/bin/qgrey) under [rcpt]",
        "GL_STAGE=data, but {f} lists no qgrey [data] entry: greylisted messages are accepted "
        "at DATA; fix: write it with python3 -m qgrey.launcher --data PATH (or python3 -m "
        "qgrey.install) and list it last under [data]"]),
    # qmail-spp reads only the second character of a header, strips trailing
    # blanks and skips '#' lines: this one is right.
    ("# plugins\n[m]\n{m}  \n[rcpt-stage]\n{r}\t\n\n#[data]\n[d]\n#/bin/check-message\n{d}\n", []),
    # Entries before any section header are never run.
    ("{r}\n{d}\n{m}\n", [
        "{f} lists no qgrey launcher under [rcpt]: nothing is greylisted; fix: list the launcher "
        "(python3 -m qgrey.install writes /opt/qgrey/bin/qgrey) under [rcpt]",
        "GL_STAGE=data, but {f} lists no qgrey [data] entry: greylisted messages are accepted "
        "at DATA; fix: write it with python3 -m qgrey.launcher --data PATH (or python3 -m "
        "qgrey.install) and list it last under [data]",
        "GL_STAGE=data, but {f} lacks the [mail] line :echo SQGREY_DATA=: a transaction can "
        "take the state of an earlier one; fix: add the line :echo SQGREY_DATA= last under [mail]"]),
], ids=["no-data-entry", "no-mail-line", "rcpt-only", "mail-line-not-last", "data-entry-not-last",
        "swapped", "as-qmail-spp-reads-it", "no-sections"])
def test_smtpplugins_at_stage_data(site, text, problems):
    names = dict(m=MAIL_LINE, r=site.rcpt, d=site.data, f=site.plugins)
    site.write_plugins(text.format(**names))
    result = site.check()
    if problems:
        site.problems(result, *(p.format(**names) for p in problems))
    else:
        site.ok(result)


def test_smtpplugins_at_stage_rcpt(site):
    # The GL_STAGE=data entries listed: worth a note, not a failure.
    result = site.check(stage="rcpt")
    assert (result.returncode, result.stdout) == (0, (
        "note: GL_STAGE=rcpt here, but {f} lists qgrey's [data] entry and [mail] line "
        "(harmless); if qmail-smtpd's environment sets GL_STAGE=data, check with it set\n"
        "ok: GL_DIR={g} GL_STORE=sqlite\n").format(f=site.plugins, g=site.gl_dir))
    # qgrey not last under [rcpt]: a warning.
    site.write_plugins("[rcpt]\n%s\n/bin/check-recipient\n" % site.rcpt)
    result = site.check(stage="rcpt")
    assert (result.returncode, result.stdout) == (0, (
        "warning: qgrey is listed before /bin/check-recipient under [rcpt] in {f}: a RCPT that "
        "it refuses after qgrey leaves qgrey's header in the message; fix: list qgrey last "
        "under [rcpt]\nok: GL_DIR={g} GL_STORE=sqlite\n").format(f=site.plugins, g=site.gl_dir))
    site.write_plugins("[rcpt]\n/bin/check-recipient\n")
    site.problems(
        site.check(stage="rcpt"),
        "%s lists no qgrey launcher under [rcpt]: nothing is greylisted; fix: list the launcher "
        "(python3 -m qgrey.install writes /opt/qgrey/bin/qgrey) under [rcpt]" % site.plugins)


def test_smtpplugins_missing_or_unreadable(site):
    missing = site.base + "/control/none"
    result = site.check("--smtpplugins", missing)
    site.problems(result, "%s does not exist; fix: name qmail's control/smtpplugins with "
                          "--smtpplugins" % missing)
    os.chmod(site.plugins, 0o600)
    site.problems(
        site.check(),
        "cannot read %s as nobody: Permission denied, nor can qmail-smtpd (421 to every client); "
        "fix: chmod a+r %s" % (site.plugins, site.plugins))


def test_default_smtpplugins_missing_is_a_note(site):
    """Without --smtpplugins, a missing /var/qmail/control/smtpplugins (no
    qmail here, or elsewhere) is said, not failed."""
    if os.path.exists("/var/qmail/control/smtpplugins"):
        pytest.skip("this host has /var/qmail/control/smtpplugins")
    result = subprocess.run(
        [os.path.join(BIN, "qgrey-admin"), "check", "--user", "nobody"],
        env={"PATH": "/usr/bin:/bin", "GL_DIR": site.gl_dir}, capture_output=True, text=True,
        timeout=60)
    assert (result.returncode, result.stdout) == (0, (
        "note: /var/qmail/control/smtpplugins does not exist: qgrey's entries in qmail-spp's "
        "plugin list not checked (--smtpplugins PATH names another)\n"
        "ok: GL_DIR=%s GL_STORE=sqlite\n") % site.gl_dir)


def test_salt_only_root_can_read(site):
    """GL_PRIVACY=1 with a salt root made: the plugin cannot hash a key."""
    salt = site.gl_dir + "/salt"
    with open(salt, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(salt, 0o600)
    site.problems(
        site.check(GL_PRIVACY="1"),
        "%s is not readable by nobody (owner root, mode 0600), and the plugin cannot use it; "
        "fix: chown nobody %s" % (salt, salt))
    site.problems(  # read only with GL_PRIVACY=1; root's all the same
        site.check(),
        "%s belongs to root, not to nobody who owns GL_DIR (did root write it?); fix: chown "
        "nobody %s" % (salt, salt))
