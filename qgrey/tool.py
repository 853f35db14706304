"""The boundary of the command-line tools (qgrey-expire, qgrey-admin,
qgrey-report): every error becomes one line on stderr and an exit status.

Exit status: 0 done; 100 usage, bad input or a damaged database;
111 temporary failure (lock, I/O, interrupted). Tools may add their own
(qgrey-admin: 1 when there is no such entry or check found a problem).

Run as root, a tool takes the ids of GL_DIR's owner before it reads
anything there (become_owner): the plugin's user owns GL_DIR and could
plant links or files in it for root to follow; as that user, the tool can
reach nothing through them that the user could not reach already, and
what it creates belongs to that user, as the plugin needs.
"""
import os
import sys

from qgrey.store import StoreError


class Failure(Exception):
    """One line for stderr, and the exit status."""

    def __init__(self, text, status=100):
        Exception.__init__(self, text)
        self.status = status


# What the tools may import after taking another user's ids (GL_DIR's
# owner, or check --user): loaded before, since that user may not be able
# to read this Python's files (an interpreter under /root, say). Names
# missing from this Python are skipped; every module of qgrey is loaded.
PRELOAD = ("fcntl", "_signal", "signal", "_struct", "_socket", "bisect", "hashlib",
           "importlib", "marshal", "encodings.ascii", "encodings.utf_8", "encodings.idna",
           "pwd", "grp", "shlex", "ast", "re", "dbm", "dbm.gnu", "dbm.ndbm", "dbm.sqlite3")
NOT_PRELOADED = ("__init__", "__main__", "install")  # the installer: never run by a tool


def preload():
    import importlib
    import qgrey
    package = os.path.dirname(qgrey.__file__)
    names = list(PRELOAD)
    for directory, prefix in ((package, "qgrey."), (package + "/store", "qgrey.store.")):
        names.extend(prefix + name[:-3] for name in sorted(os.listdir(directory))
                     if name.endswith(".py") and name[:-3] not in NOT_PRELOADED)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from qgrey.store import sqlite
    sqlite._load_sqlite()


def become_owner(directory):
    """Run as root, take the ids of the owner of directory (GL_DIR) when
    it belongs to another user -> the uid taken, or None (not root, no
    such directory, or root's own). Call it before anything in the
    directory is read (GL_DIR/config too), after the files named on the
    command line are opened.

    The ids are all replaced (real, effective, saved): the tool cannot
    become root again. Groups: the owner's passwd entry, its group and
    supplementary groups, as login would give them; an owner without a
    passwd entry gets the directory's group and no other. When root keeps
    its ids, GL_DIR is root's, and the store refuses it if others may
    write it: then nothing there was put by another user."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(directory)
    except OSError:
        return None  # the store says what is wrong with it
    if not (st.st_mode & 0o170000 == 0o040000 and st.st_uid != 0):
        return None
    import pwd
    try:
        entry = pwd.getpwuid(st.st_uid)
    except KeyError:
        groups, gid = [], st.st_gid
    else:
        groups, gid = os.getgrouplist(entry.pw_name, entry.pw_gid), entry.pw_gid
    preload()
    try:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(st.st_uid)
    except OSError as err:
        raise Failure("cannot take the ids of uid %d, the owner of GL_DIR %s: %s"
                      % (st.st_uid, directory, err.strerror), 111)
    return st.st_uid


def main(program, run):
    """sys.exit(run(argv, environ, stdout)), errors said in one line."""
    os.umask(0o077)
    try:
        status = run(sys.argv[1:], os.environb, sys.stdout)
        sys.stdout.flush()
    except Failure as err:
        sys.stderr.write("%s: fatal: %s\n" % (program, err))
        status = err.status
    except StoreError as err:
        sys.stderr.write("%s: fatal: %s\n" % (program, err.detail))
        status = 100 if err.reason == "database" else 111
    except BrokenPipeError:  # a reader such as head went away: not an error
        status = 0
        sys.stdout = None
    except KeyboardInterrupt:
        sys.stderr.write("%s: fatal: interrupted\n" % program)
        status = 111
    except OSError as err:
        sys.stderr.write("%s: fatal: %s%s\n" % (
            program, err.strerror or err, ": " + err.filename if err.filename else ""))
        status = 111
    except ImportError as err:  # a module out of reach of GL_DIR's owner
        sys.stderr.write("%s: fatal: cannot load a module: %s\n" % (program, err))
        status = 111
    except UnicodeError as err:
        sys.stderr.write("%s: fatal: not ASCII text: %s\n" % (program, err))
        status = 100
    sys.exit(status)
