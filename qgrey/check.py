"""qgrey-admin check: will the plugin work, as the user it runs as?

Everything is checked with the ids of that user (--user, or GL_DIR's owner
when root runs it), settings included: GL_DIR/config is read as the plugin
reads it. Checked: the settings; GL_DIR (owner, no group or other write)
and every file in it (owned by GL_DIR's owner; the files the plugin reads
regular, readable, writable where it writes); the database; qmail's
control/smtpplugins: qgrey's entries, in the right sections and order for
GL_STAGE, each launcher and its interpreter executable by the user, the
qgrey package readable. Each problem is one line saying what is wrong and
how to fix it.
"""
import os
import stat
import sys

from qgrey import settings as settings_module
from qgrey.launcher import MAIL_ENTRY
from qgrey.store import LOCK_NAME, QUEUE_NAME, StoreError, check_directory, open_store

SMTPPLUGINS = "/var/qmail/control/smtpplugins"
LISTS = ("whitelist-clients", "whitelist-recipients", "whitelist-senders", "greytraps")
# Read through a link too (to a file of root's or GL_DIR owner's); salt and
# redis-auth never.
FOLLOWED = (settings_module.CONFIG_NAME,) + LISTS
# The modules the checks need, loaded before the ids are switched: the
# user may not be able to read this Python's library directory.
def problems_as_current_user(settings, notes):
    config = settings.dir + "/" + settings_module.CONFIG_NAME
    found = []
    for problem in settings.problems:
        if not problem.startswith("cannot read %s:" % config):  # said below, with its fix
            found.append("setting: %s" % problem)
    settings_found = list(found)
    user = _user_name(os.geteuid())
    directory, stop = directory_problems(settings, user)
    found += directory
    files = [] if stop else file_problems(settings, user)
    found += files
    if settings.store == "redis":  # the database is elsewhere: checked whatever GL_DIR is
        from qgrey.store import redis
        return found + redis_problems(settings, notes, redis)
    if stop or directory or files:
        return found
    try:
        store = open_store(settings)
    except StoreError as err:
        return found + [err.detail]
    try:
        lock = settings.dir + "/" + LOCK_NAME
        paths = [lock, settings.dir + "/" + QUEUE_NAME, store.path, store.path + "-journal"]
        for path in paths:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                found.append("%s is not a regular file; fix: remove it" % path)
            elif not os.access(path, os.R_OK | os.W_OK):
                found.append("%s is not readable and writable by %s; fix: chown %s %s" % (
                    path, user, user, path))
        if found[len(settings_found):]:
            return found
        # dbm.ndbm's file is store.path + ".db" (Berkeley DB), or .pag and .dir.
        if not any(os.path.exists(store.path + suffix) for suffix in ("", ".db", ".pag", ".dir")):
            return found  # the plugin creates it on its first greylisting
        try:
            found.extend("database %s: %s" % (store.path, p) for p in
                         store.maintain(lambda s: s._integrity(), exclusive=False))
        except StoreError as err:
            found.append("database: %s; fix: restore it from a qgrey-admin dump, or move it "
                         "aside (the plugin starts a new one)" % err.detail)
    finally:
        store.close()
    return found


def directory_problems(settings, user):
    """GL_DIR as the plugin needs it -> (problems, whether to stop there)."""
    path = settings.dir
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if settings.store == "redis" and settings.on_error != "local" and not settings.privacy:
            return [], True  # nothing of qgrey's lives on this host
        return ["GL_DIR %s does not exist; fix: mkdir -m 700 %s && chown %s %s" % (
            path, path, user, path)], True
    except OSError as err:
        if err.errno == 13:  # EACCES
            return ["GL_DIR %s: %s; fix: a directory above it is not searchable by %s; chmod "
                    "a+x %s" % (path, err.strerror, user, _blocked(path) or "the parents")], True
        return ["GL_DIR %s: %s" % (path, err.strerror)], True
    if not stat.S_ISDIR(st.st_mode):
        return ["GL_DIR %s is not a directory; fix: mkdir -m 700 it, owned by %s" % (path, user)], True
    found = []
    if st.st_mode & 0o022:
        found.append("GL_DIR %s is writable by %s: another user could replace any file the "
                     "plugin reads there, and the plugin refuses it (reason=directory); fix: "
                     "chmod go-w %s" % (path, "others" if st.st_mode & 0o002 else "its group",
                                         path))
    if st.st_uid not in (0, os.geteuid()):
        found.append("GL_DIR %s belongs to %s, not to %s, and the plugin refuses it "
                     "(reason=directory); fix: chown -R %s %s" % (
                         path, _user_name(st.st_uid), user, user, path))
        return found, True
    if not found:
        try:
            check_directory(path)
        except StoreError as err:  # anything else the plugin refuses
            return [err.detail], True
    if settings.store != "redis" or settings.on_error == "local" or settings.privacy:
        if not os.access(path, os.W_OK | os.X_OK):
            found.append("GL_DIR %s is not writable by %s (the database and its journal are "
                         "created there); fix: chown %s %s" % (path, user, user, path))
            return found, True
    return found, False


def file_problems(settings, user):
    """Every file in GL_DIR belongs to GL_DIR's owner; the ones the plugin
    reads are regular files it can read."""
    found = []
    owner = os.stat(settings.dir).st_uid
    try:
        names = sorted(os.listdir(settings.dir))
    except OSError as err:
        return ["cannot list GL_DIR %s as %s: %s; fix: chown %s %s" % (
            settings.dir, user, err.strerror, user, settings.dir)]
    read = [settings_module.CONFIG_NAME] + list(LISTS)
    if settings.privacy:
        read.append("salt")
    if settings.store == "redis":
        read.append("redis-auth")
    for name in names:
        path = settings.dir + "/" + name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        theirs = st.st_uid != owner
        target = st
        if name in read and stat.S_ISLNK(st.st_mode) and name in FOLLOWED:
            try:
                target = os.stat(path)
            except OSError:
                pass
        if name.startswith(".") and name.endswith(".cache") and not stat.S_ISREG(st.st_mode):
            found.append("%s is not a regular file (%s); fix: remove it (the plugin writes the "
                         "cache of a list again)" % (path, _kind(st.st_mode)))
        elif name in read and not stat.S_ISREG(target.st_mode):
            found.append("%s is not a regular file (%s), and the plugin does not read it; fix: "
                         "replace it with a regular file" % (path, _kind(st.st_mode)))
        elif target is not st and target.st_uid not in (0, owner):
            found.append("%s is a link to a file of %s's, and the plugin follows a link there only "
                         "to a file of root's or %s's; fix: chown %s %s" % (
                             path, _user_name(target.st_uid), _user_name(owner),
                             _user_name(owner), os.path.realpath(path)))
        elif name in read and not os.access(path, os.R_OK):
            found.append("%s is not readable by %s (owner %s, mode %04o), and the plugin %s; "
                         "fix: %s" % (path, user, _user_name(st.st_uid), st.st_mode & 0o7777,
                                      "runs on the defaults" if name == settings_module.CONFIG_NAME
                                      else "cannot use it",
                                      "chown %s %s" % (user, path) if st.st_uid != os.geteuid()
                                      else "chmod u+r %s" % path))
            continue
        if theirs:
            found.append("%s belongs to %s, not to %s who owns GL_DIR (did root write it?); "
                         "fix: chown %s %s" % (path, _user_name(st.st_uid), _user_name(owner),
                                               _user_name(owner), path))
    return found


def _kind(mode):
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _blocked(path):
    """The first directory above path that this user cannot search, or None."""
    parts = path.split("/")
    for end in range(2, len(parts)):
        directory = "/".join(parts[:end]) or "/"
        if not os.access(directory, os.X_OK):
            return directory
    return None


# control/smtpplugins: qgrey's entries

def read_smtpplugins(path):
    """-> [(section, entry)] as qmail-spp reads the file: trailing blanks
    stripped, blank and '#' lines skipped, a section named by the second
    character of its header; entries before any header are never run."""
    with open(path, "rb") as f:
        text = f.read(1 << 20)
    entries, section = [], None
    names = {"c": "connection", "h": "helo", "m": "mail", "r": "rcpt", "d": "data"}
    for line in text.split(b"\n"):
        line = line.rstrip(b" \t\n").decode("utf-8", "replace")
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = names.get(line[1:2])
        elif section is not None:
            entries.append((section, line))
    return entries


def launcher_kind(path):
    """-> (kind, text): "rcpt" or "data" for a launcher of qgrey's, None for
    another plugin; text is None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            text = f.read(65536).decode("utf-8", "replace")
    except OSError:
        name = os.path.basename(path)
        return {"qgrey": "rcpt", "qgrey-data": "data"}.get(name), None
    if "qgrey [data] launcher" in text or "main(\"data\")" in text:
        return "data", text
    if "qgrey launcher for qmail-spp" in text or "from qgrey.plugin import main" in text:
        return "rcpt", text
    return None, text


def interpreters(text):
    """The programs a launcher runs: its #! interpreter, and for the [data]
    launcher the Python its exec line starts. -> (programs, qgrey's parent directory)."""
    import ast
    import re
    import shlex
    programs, code = [], text
    first = text.split("\n", 1)[0]
    if first.startswith("#!") and first[2:].split():
        programs.append(first[2:].split()[0])
    at = text.find("\nexec ")  # the [data] launcher: exec PYTHON -IS -c CODE, to the end
    if at >= 0:
        try:
            words = shlex.split(text[at + 1:])
        except ValueError:
            words = []
        if len(words) > 1:
            programs.append(words[1])
            code = " ".join(words[2:])
    found = re.search(r"sys\.path\.insert\(0, ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\)", code)
    parent = None
    if found:
        try:
            parent = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            pass
    return programs, parent


def runnable(path, user):
    """None, or (why user cannot run path, the fix or None)."""
    blocked = _blocked(path)
    if blocked:
        return "cannot be run by %s (%s is not searchable by %s)" % (user, blocked, user), \
            "chmod a+x %s" % blocked
    if not os.path.exists(path):
        return "does not exist", None
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        return "is not executable by %s" % user, "chmod a+rx %s" % path
    return None


CONSEQUENCE = {
    "rcpt": "qmail-smtpd would answer every RCPT with 451 qmail-spp failure",
    "data": "every message would be accepted unchecked at DATA",
}


def launcher_problems(path, section, kind, text, user):
    found = []
    why = runnable(path, user)
    if why is None and text is None:
        why = "is not readable by %s" % user, "chmod a+r %s" % path
    if why is not None:
        return ["the launcher %s ([%s]) %s: %s; fix: %s" % (
            path, section, why[0], CONSEQUENCE[kind], why[1] or "write the launcher "
            "(python3 -m qgrey.install, or python3 -m qgrey.launcher%s %s)" % (
                " --data" if kind == "data" else "", path))]
    programs, parent = interpreters(text)
    for program in programs:
        why = runnable(program, user)
        if why is not None:
            fix = "write the launcher again with an interpreter %s can run " \
                  "(/usr/bin/python3 -m qgrey.install)" % user
            found.append("the interpreter %s of the launcher %s ([%s]) %s: %s; fix: %s" % (
                program, path, section, why[0], CONSEQUENCE[kind],
                "%s, or %s" % (why[1], fix) if why[1] else fix))
    if parent is not None and not found:
        module = os.path.join(parent, "qgrey", "plugin.py")
        if not os.access(module, os.R_OK):
            blocked = _blocked(module)
            found.append("qgrey in %s, which the launcher %s ([%s]) imports, is not readable by "
                         "%s: %s; fix: %s" % (parent, path, section, user, CONSEQUENCE[kind],
                                              "chmod a+x %s" % blocked if blocked else
                                              "chmod -R a+rX %s/qgrey" % parent))
    return found


def plugin_problems(path, given, settings, user, notes):
    """qgrey's entries in control/smtpplugins, as GL_STAGE needs them."""
    try:
        entries = read_smtpplugins(path)
    except FileNotFoundError:
        if given:
            return ["%s does not exist; fix: name qmail's control/smtpplugins with "
                    "--smtpplugins" % path]
        notes.append("note: %s does not exist: qgrey's entries in qmail-spp's plugin list "
                     "not checked (--smtpplugins PATH names another)" % path)
        return []
    except OSError as err:
        return ["cannot read %s as %s: %s, nor can qmail-smtpd (421 to every client); fix: "
                "chmod a+r %s" % (path, user, err.strerror, path)]
    found, sections = [], {}
    here = os.path.dirname(os.path.dirname(os.path.abspath(path)))  # qmail's home: its cwd
    for section, entry in entries:
        if entry.startswith(":"):
            kind = "mail-line" if entry == MAIL_ENTRY else None
            sections.setdefault(section, []).append((entry, kind))
            continue
        program = os.path.join(here, entry)
        kind, text = launcher_kind(program)
        sections.setdefault(section, []).append((entry, kind))
        if kind is None:
            continue
        if (section, kind) not in (("rcpt", "rcpt"), ("data", "data")):
            found.append("%s, qgrey's %s launcher, is listed under [%s]; fix: list %s" % (
                entry, "[%s]" % kind, section, "qgrey under [rcpt]" if kind == "rcpt" else
                "qgrey-data under [data] (GL_STAGE=data)"))
            continue
        found += launcher_problems(program, section, kind, text, user)

    def listed(section, kind):
        return [i for i, (_, k) in enumerate(sections.get(section, [])) if k == kind]

    def after(section, index):
        return [e for e, _ in sections.get(section, [])[index + 1:]]

    rcpt = listed("rcpt", "rcpt")
    if not rcpt:
        found.append("%s lists no qgrey launcher under [rcpt]: nothing is greylisted; fix: "
                     "list the launcher (python3 -m qgrey.install writes /opt/qgrey/bin/qgrey) "
                     "under [rcpt]" % path)
    elif after("rcpt", rcpt[-1]):
        notes.append("warning: qgrey is listed before %s under [rcpt] in %s: a RCPT that it "
                     "refuses after qgrey %s; fix: list qgrey last under [rcpt]" % (
                         after("rcpt", rcpt[-1])[0], path,
                         "was recorded for a message it is not in" if settings.stage == "data"
                         else "leaves qgrey's header in the message"))
    data, mail = listed("data", "data"), listed("mail", "mail-line")
    if settings.stage != "data":
        if data or mail:
            notes.append("note: GL_STAGE=rcpt here, but %s lists qgrey's %s (harmless); if "
                         "qmail-smtpd's environment sets GL_STAGE=data, check with it set" % (
                             path, " and ".join(n for n, x in (("[data] entry", data),
                                                             ("[mail] line", mail)) if x)))
        return found
    if not data:
        found.append("GL_STAGE=data, but %s lists no qgrey [data] entry: greylisted messages "
                     "are accepted at DATA; fix: write it with python3 -m qgrey.launcher --data "
                     "PATH (or python3 -m qgrey.install) and list it last under [data]" % path)
    elif after("data", data[-1]):
        found.append("qgrey's [data] entry is listed before %s under [data] in %s: a message "
                     "that %s refuses leaves qgrey's header for the next message of the "
                     "connection; fix: list qgrey's [data] entry last under [data]" % (
                         after("data", data[-1])[0], path, after("data", data[-1])[0]))
    if not mail:
        found.append("GL_STAGE=data, but %s lacks the [mail] line %s: a transaction can take "
                     "the state of an earlier one; fix: add the line %s last under [mail]" % (
                         path, MAIL_ENTRY, MAIL_ENTRY))
    elif after("mail", mail[-1]):
        found.append("the [mail] line %s is listed before %s under [mail] in %s: a MAIL that "
                     "%s refuses empties the state of the transaction still open, and its "
                     "greylisted recipients no longer hold the message; fix: list the line last "
                     "under [mail]" % (MAIL_ENTRY, after("mail", mail[-1])[0], path,
                                       after("mail", mail[-1])[0]))
    return found


# A sample of keys whose TTLs are checked.
TTL_SAMPLE = 1000
CLOCK_SKEW = 60


def redis_problems(settings, notes, redis):
    """Each server in GL_REDIS: reachable, authenticated, its role; the
    first primary: the commands the plugin sends, TTLs on a sample of keys,
    eviction, clock. Warnings go to notes."""
    found, failed = [], []
    primary = None
    for server in settings.redis:
        store = redis.RedisStore(settings, None)
        store.servers = (server,)
        name = redis.Connection.describe(server)
        try:
            info = store.call(b"INFO", b"replication").decode("ascii", "replace")
        except StoreError as err:
            failed.append("%s; fix: %s" % (err.detail, REDIS_FIXES.get(err.reason, "see the Redis log")))
            continue
        role = _info_field(info, "role") or "unknown"
        notes.append("Redis %s answers: role %s" % (name, role))
        if role == "master" and primary is None:
            primary = store
        else:
            store.close()
    if primary is None:
        return failed or ["no server in GL_REDIS is a primary: decisions that write fail "
                          "with READONLY; fix: list the primary in GL_REDIS"]
    # A primary serves: a server listed for failover that is down is worth a warning.
    notes.extend("warning: " + problem for problem in failed)
    try:
        found.extend(_redis_primary(primary, settings, notes))
    except StoreError as err:
        found.append("%s; fix: %s" % (err.detail, REDIS_FIXES.get(err.reason, "see the Redis log")))
    finally:
        primary.close()
    return found


REDIS_FIXES = {
    "unreachable": "start Redis, or correct GL_REDIS",
    "timeout": "Redis is stalled or too far away; raise GL_REDIS_TIMEOUT only if it is slow",
    "auth": "put the right password (or user, then password) in GL_DIR/redis-auth, mode 600, "
            "and grant the user the commands docs/redis.md lists",
    "readonly": "list the primary in GL_REDIS",
    "loading": "wait until Redis has loaded its data",
}


def _redis_primary(store, settings, notes):
    import time
    from qgrey.store.redis import command
    found = []
    # The commands of a decision that writes, on a key of its own.
    probe = store.prefix + b"check"
    replies = store._pipeline([command(b"WATCH", probe), command(b"MGET", probe), command(b"TIME"),
                               command(b"MULTI"), command(b"SET", probe, b"0 0 0 0", b"EX", 60),
                               command(b"DEL", probe), command(b"EXEC")])
    for reply in replies:
        redis_check(reply, store)
    offset = int(replies[2][0]) - time.time()
    if abs(offset) > CLOCK_SKEW:
        notes.append("warning: this host's clock is %+d s off the Redis server's; decisions use "
                     "the server's clock, but headers, logs and qgrey-admin ages use this one; "
                     "fix: run NTP here" % -offset)
    memory = store.call(b"INFO", b"memory").decode("ascii", "replace")
    policy = _info_field(memory, "maxmemory_policy")
    if _info_field(memory, "maxmemory") not in (None, "0") and policy != "noeviction":
        notes.append("warning: maxmemory-policy %s lets Redis evict keys when full: passed "
                     "triplets would be forgotten and their mail greylisted again; fix: "
                     "maxmemory-policy noeviction (new triplets then get GL_ON_ERROR, known "
                     "ones still pass)" % policy)
    without, sampled = 0, 0
    for key, _ in store.entries(TTL_SAMPLE):
        sampled += 1
        if store.call(b"TTL", store.prefix + key.encode()) == -1:
            without += 1
        if sampled >= TTL_SAMPLE:
            break
    if without:
        found.append("%d of %d keys sampled under %s have no TTL and would never expire; "
                     "fix: qgrey-admin dump then load them again" % (
                         without, sampled, settings.redis_prefix))
    notes.append("Redis: %d keys sampled, all with a TTL" % sampled if not without else
                 "Redis: %d keys sampled" % sampled)
    return found


def redis_check(reply, store):
    from qgrey.store.redis import check
    return check(reply, store.conn)


def _info_field(info, name):
    for line in info.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def _user_name(uid):
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def report(found, notes, settings, out):
    for note in notes:
        out.write("%s\n" % note)
    for problem in found:
        out.write("problem: %s\n" % problem)
    if found:
        out.write("qgrey will not work as it should: %d problem%s\n" % (
            len(found), "" if len(found) == 1 else "s"))
        return 1
    out.write("ok: GL_DIR=%s GL_STORE=%s\n" % (settings.dir, settings.store))
    return 0


def check_all(environ, smtpplugins, given, out):
    """Every check, with this process's ids -> exit status."""
    settings = settings_module.load(environ)
    notes = []
    found = problems_as_current_user(settings, notes)
    found += plugin_problems(smtpplugins, given, settings, _user_name(os.geteuid()), notes)
    return report(found, notes, settings, out)


def run(environ, user, out, smtpplugins=None):
    """qgrey-admin check [--user USER] [--smtpplugins PATH] -> exit status.
    environ: the raw (bytes) environment; the settings are loaded with the
    checked user's ids, never root's."""
    given = smtpplugins is not None
    smtpplugins = smtpplugins if given else SMTPPLUGINS
    if user is None:
        return check_all(environ, smtpplugins, given, out)
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        from qgrey.tool import Failure
        raise Failure("no such user: %s" % user)
    from qgrey.tool import preload
    preload()
    out.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the checks run with that user's ids, as the plugin will
        status = 111
        try:
            try:
                os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
            except OSError as err:
                sys.stderr.write("qgrey-admin: fatal: cannot become %s: %s\n" % (user, err.strerror))
                os._exit(111)
            status = check_all(environ, smtpplugins, given, out)
            out.flush()
        except BaseException as err:
            sys.stderr.write("qgrey-admin: fatal: checking as %s: %s: %s\n" % (
                user, type(err).__name__, err))
        finally:
            sys.stderr.flush()
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
