"""qgrey-admin check: will the plugin work, as the user it runs as?

Each problem is one line saying what is wrong and how to fix it.
"""
import os
import stat
import sys

from qgrey.store import LOCK_NAME, QUEUE_NAME, StoreError, check_directory, open_store


def problems_as_current_user(settings, notes):
    found = []
    for problem in settings.problems:
        found.append("setting: %s" % problem)
    user = _user_name(os.getuid())
    if settings.store == "redis":
        from qgrey.store import redis
        return found + redis_problems(settings, notes, redis)
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
            "and grant the user the commands the README lists",
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


def run(settings, user, out):
    if user is None:
        notes = []
        return report(problems_as_current_user(settings, notes), notes, settings, out)
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        from qgrey.tool import Failure
        raise Failure("no such user: %s" % user)
    # The modules the checks need are loaded now: the user may not be able
    # to read this Python's library directory.
    import fcntl  # noqa: F401
    import _signal  # noqa: F401
    from qgrey.store import redis, sqlite  # noqa: F401
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
            notes = []
            status = report(problems_as_current_user(settings, notes), notes, settings, out)
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
