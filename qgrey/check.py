"""qgrey-admin check: will the plugin work, as the user it runs as?

Each problem is one line saying what is wrong and how to fix it.
"""
import os
import stat
import sys

from qgrey.store import LOCK_NAME, StoreError, check_directory, open_store


def problems_as_current_user(settings):
    found = []
    for problem in settings.problems:
        found.append("setting: %s" % problem)
    user = _user_name(os.getuid())
    try:
        check_directory(settings.dir)
    except StoreError as err:
        fix = "mkdir -m 700 %s && chown %s %s" % (settings.dir, user, settings.dir)
        if "Permission denied" in err.detail:
            fix = "a directory above it is not searchable by %s; chmod a+x the parents" % user
        if "writable by others" not in err.detail:
            return found + ["%s; fix: %s" % (err.detail, fix)]
        found.append(err.detail)
    if not os.access(settings.dir, os.W_OK | os.X_OK):
        found.append("GL_DIR %s is not writable by %s (the database and its journal are created "
                     "there); fix: chown %s %s" % (settings.dir, user, user, settings.dir))
        return found
    try:
        store = open_store(settings)
    except StoreError as err:
        return found + [err.detail]
    try:
        lock = settings.dir + "/" + LOCK_NAME
        paths = [lock, store.path, store.path + "-journal"]
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
        if found:
            return found
        if not os.path.exists(store.path):
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


def _user_name(uid):
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def report(found, settings, out):
    for problem in found:
        out.write("problem: %s\n" % problem)
    if found:
        out.write("qgrey will not work as it should: %d problem%s\n" % (
            len(found), "" if len(found) == 1 else "s"))
        return 1
    out.write("ok: GL_DIR=%s GL_STORE=%s\n" % (settings.dir, settings.store))
    return 0


def run(settings, user, out):
    if user is None:
        return report(problems_as_current_user(settings), settings, out)
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        from qgrey.admin import Failure
        raise Failure("no such user: %s" % user)
    # The modules the checks need are loaded now: the user may not be able
    # to read this Python's library directory.
    import fcntl  # noqa: F401
    import _signal  # noqa: F401
    from qgrey.store import sqlite
    sqlite._load_sqlite()
    if settings.store != "sqlite":
        from qgrey.store import dbm
        try:
            dbm.module(settings.store)
        except StoreError:
            pass
    out.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the checks run with that user's ids, as the plugin will
        status = 111
        try:
            os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            status = report(problems_as_current_user(settings), settings, out)
            out.flush()
        except OSError as err:
            sys.stderr.write("qgrey-admin: fatal: cannot become %s: %s\n" % (user, err.strerror))
        except BaseException as err:
            sys.stderr.write("qgrey-admin: fatal: checking as %s: %s: %s\n" % (
                user, type(err).__name__, err))
        finally:
            sys.stderr.flush()
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
