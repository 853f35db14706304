"""Where entries live: one small interface over several database kinds.

Store is the interface. The one operation of a request is
change_many(keys, change, now): it reads the entries of keys, calls
change(entries, now) -> (result, new entries), and writes what changed,
atomically against every other process (and, for a shared store, every
other host). now is the caller's clock, or the store's own where the store
is shared and has one (Redis): see RedisStore.

FileStore is the kind that lives in GL_DIR: the one operation that changes
data is update_many(keys, change): under an exclusive flock on GL_DIR/lock
it reads the entries, calls change(entries) -> (result, new entries),
writes each new entry that is another object, and commits before the lock
is released. Lookups read under a shared lock. Every lock is waited for
until one deadline, fixed when the store is opened.

Nothing here knows about the environment, stdout, the command line or the
rules.
"""
import posix
import time

LOCK_NAME = "lock"
# Writers queue on this file first, so that at most one of them waits on
# LOCK_NAME at a time: readers of a dbm store (shared flock on LOCK_NAME)
# then wait for one writer at most, never for a queue of them.
QUEUE_NAME = "lock.queue"


class StoreError(Exception):
    """The database cannot be used. reason is one word for the log."""

    def __init__(self, reason, detail):
        Exception.__init__(self, detail)
        self.reason = reason
        self.detail = detail


# The reason that means "others were writing": a decision read before stands.
CONTENTION = ("lock-timeout",)


def os_error(what, err):
    reason = "disk-full" if err.errno in (28, 122) else "io"  # ENOSPC, EDQUOT
    return StoreError(reason, "%s: %s" % (what, err.strerror or err))


def sqlite_reason(text):
    """The log reason of an SQLite error message (also behind dbm.sqlite3)."""
    if "disk is full" in text:
        return "disk-full"
    if "disk I/O" in text or "readonly" in text or "unable to open" in text:
        return "io"
    if "locked" in text:
        return "lock-timeout"
    return "database"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


class Lock:
    """flock on GL_DIR/lock, opened without following symlinks, with a deadline.

    The wait is a blocking flock interrupted by a timer: no polling, and
    the process never waits past the deadline.
    """

    def __init__(self, path, deadline):
        self.path = path
        self.deadline = deadline
        self.fd = None

    def _open(self):
        flags = posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK
        try:
            self.fd = posix.open(self.path, flags | posix.O_RDWR | posix.O_CREAT, 0o600)
        except OSError as err:
            # A read-only directory or file system still lets lookups pass
            # known senders: flock needs no write access.
            if err.errno not in (1, 13, 30):  # EPERM, EACCES, EROFS
                raise os_error("cannot open lock file " + self.path, err)
            try:
                self.fd = posix.open(self.path, flags | posix.O_RDONLY)
            except OSError:
                raise os_error("cannot open lock file " + self.path, err)
        if posix.fstat(self.fd).st_mode & 0o170000 != 0o100000:
            raise StoreError("io", "lock file %s is not a regular file" % self.path)

    def acquire(self, exclusive):
        import fcntl
        if self.fd is None:
            self._open()
        operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self.fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout()
        # The signal module imports enum and more; _signal is what it wraps.
        try:
            import _signal as signal
        except ImportError:  # pragma: no cover - _signal is built into CPython; kept for others
            import signal
        previous = signal.signal(signal.SIGALRM, _alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, remaining)
            fcntl.flock(self.fd, operation)
        except _Timeout:
            raise self._timeout()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _timeout(self):
        return StoreError("lock-timeout", "no lock on %s within the deadline" % self.path)

    def release(self):
        import fcntl
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self):
        if self.fd is not None:
            posix.close(self.fd)
            self.fd = None


def check_directory(path, st=None):
    """GL_DIR must exist, be a directory, belong to root or to this process's
    effective user, and be writable by its owner only: everything in it is
    trusted, and whoever may write the directory may replace any file in it
    (settings.directory_problem). st: its stat, when the caller has it.
    -> its stat. Raises StoreError("directory", one line with the fix)."""
    from qgrey.settings import directory_problem
    if st is None:
        try:
            st = posix.stat(path)
        except OSError as err:
            raise StoreError("directory", "GL_DIR %s: %s" % (path, err.strerror))
    problem = directory_problem(path, st)
    if problem is not None:
        raise StoreError("directory", "GL_DIR " + problem)
    return st


def encode_entry(entry):
    """The value of an entry in stores that keep text: b"first last passed tries"."""
    return b"%d %d %d %d" % entry.fields()


def decode_entry(value):
    from qgrey.record import Entry
    fields = value.split()
    if len(fields) != 4 or not all(f.isdigit() for f in fields):
        raise StoreError("database", "malformed value %r" % bytes(value[:40]))
    return Entry(*map(int, fields))


class Store:
    """The interface every kind offers.

    Kinds provide lookup_many, update_many and entries; change_many here is
    a read and, only when something changes, an atomic update_many.
    expires_by_itself: the kind removes entries on its own (TTL), so
    qgrey-expire has nothing to do. degraded: set by a store that answered
    from somewhere else than asked (GL_ON_ERROR=local), for the log.
    """

    expires_by_itself = False
    degraded = None

    def lookup(self, key):
        """The stored entry of key, or None."""
        return self.lookup_many([key])[0]

    def update(self, key, change):
        """Atomic read-modify-write: change(entry) -> (result, new entry).

        new entry None deletes; the same object as given writes nothing.
        """
        def change_one(entries):
            result, new = change(entries[0])
            return result, [new]
        return self.update_many([key], change_one)

    def change_many(self, keys, change, now):
        """The read-modify-write of one request: change(entries, now) ->
        (result, new entries). Decided first on a plain read: a request that
        changes nothing (a known sender) takes no write lock.

        When the write cannot be done in time for contention (a wave of
        deliveries), the result decided on the read stands (a new or waiting
        triplet is still refused) and degraded says it was not recorded."""
        entries = self.lookup_many(keys)
        result, new = change(entries, now)
        if any(key is not None and n is not e for key, n, e in zip(keys, new, entries)):
            try:
                result = self.update_many(keys, lambda entries: change(entries, now))
            except StoreError as err:
                if err.reason not in CONTENTION:
                    raise
                self.degraded = "not recorded: %s (%s)" % (err.detail, err.reason)
        return result

    def close(self):
        pass


class FileStore(Store):
    """Base class of the kinds in GL_DIR: kinds provide _open(write), _get(key), _put(key, entry),
    _delete(key), _commit(), _close(), _scan(after, limit), and may override
    lookup_many().

    The batch operations (scan, remove_if, put_many) are for the tools that
    sit beside the plugin: each call is one short hold of the lock, with a
    fresh deadline of GL_LOCK_TIMEOUT, so a long job never holds the plugin
    off for longer than one batch.
    """

    file_name = None

    def __init__(self, directory, lock_timeout, deadline=None):
        self.dir = directory
        self.path = directory + "/" + self.file_name
        if deadline is None:
            deadline = time.monotonic() + lock_timeout
        self.lock = Lock(directory + "/" + LOCK_NAME, deadline)
        self.queue = Lock(directory + "/" + QUEUE_NAME, deadline)
        self.lock_timeout = lock_timeout
        self.checked = False

    def _locked(self, exclusive):
        if not self.checked:
            check_directory(self.dir)
            self.checked = True
        if not exclusive:
            self.lock.acquire(False)
            return
        self.queue.deadline = self.lock.deadline
        self.queue.acquire(True)
        try:
            self.lock.acquire(True)
        except BaseException:
            self.queue.release()
            raise

    def _unlock(self):
        self.lock.release()
        self.queue.release()

    def lookup_many(self, keys):
        """The stored entries of keys, in one go; None for a key that is
        None (not wanted) or absent."""
        self._locked(False)
        try:
            self._open(False)
            return [None if key is None else self._get(key) for key in keys]
        finally:
            self._close()
            self._unlock()

    def update_many(self, keys, change):
        """update() of several keys in one transaction:
        change(list of entries) -> (result, list of new entries).
        A key that is None is not read (its entry is None) nor written."""
        self._prepare()
        self._locked(True)
        try:
            self._open(True)
            entries = [None if key is None else self._get(key) for key in keys]
            result, new = change(entries)
            written = False
            for key, entry, new_entry in zip(keys, entries, new):
                if new_entry is entry or key is None:
                    continue
                if new_entry is None:
                    self._delete(key)
                else:
                    self._put(key, new_entry)
                written = True
            if written:
                self._commit()
            return result
        finally:
            self._close()
            self._unlock()

    def entries(self, batch=1000):
        """Every (key, entry), in key order, batch by batch."""
        after = ""
        while True:
            rows = self.scan(after, batch)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def _renew(self):
        self.lock.deadline = time.monotonic() + self.lock_timeout

    def scan(self, after="", limit=1000):
        """[(key, entry)] of at most limit entries with key > after, in key order."""
        self._renew()
        self._locked(False)
        try:
            try:
                self._open(False)
            except StoreError as err:
                if "no such table" in err.detail:
                    return []
                raise
            return self._scan(after, limit)
        finally:
            self._close()
            self._unlock()

    def remove_if(self, keys, predicate, budget=None):
        """Delete each of keys whose entry, read again under the lock, still
        satisfies predicate(key, entry); stop early, after at least one key,
        once budget seconds have gone. -> ([(key, entry)] removed, keys done)."""
        self._renew()
        self._locked(True)
        removed = []
        try:
            started = time.monotonic()
            self._open(True)
            done = 0
            for key in keys:
                entry = self._get(key)
                if entry is not None and predicate(key, entry):
                    self._delete(key)
                    removed.append((key, entry))
                done += 1
                if budget is not None and time.monotonic() - started > budget:
                    break
            if removed:
                self._commit()
            return removed, done
        finally:
            self._close()
            self._unlock()

    def put_many(self, items):
        """Write [(key, entry)] in one hold of the lock and one commit.
        -> how many were written (all)."""
        self._renew()
        self._locked(True)
        try:
            self._open(True)
            self._ensure()
            for key, entry in items:
                self._put(key, entry)
            self._commit()
            return len(items)
        finally:
            self._close()
            self._unlock()

    def _prepare(self):
        """Load what writing needs before the exclusive lock is taken: in a
        wave of deliveries every millisecond held is waited for by all."""

    def _ensure(self):
        """Create what a first write needs (kinds that need it override)."""

    def maintain(self, what, exclusive=True):
        """Run what(self) -> result with the database open under the lock
        (shared: read only): for integrity checks and shrinking, which the
        kinds provide as _integrity(), _space() and _compact()."""
        self._renew()
        self._locked(exclusive)
        try:
            self._open(exclusive)
            return what(self)
        finally:
            self._close()
            self._unlock()

    def _release(self, pages):
        """Kinds that can give free space back in small steps override this."""
        return None

    def close(self):
        self.lock.close()
        self.queue.close()


class FallbackStore(Store):
    """GL_ON_ERROR=local: a request the shared store cannot serve is decided
    on the host's own store instead (opened only then)."""

    def __init__(self, shared, open_local):
        self.shared, self.open_local, self.local = shared, open_local, None

    def change_many(self, keys, change, now):
        try:
            result = self.shared.change_many(keys, change, now)
            self.degraded = self.shared.degraded
            return result
        except StoreError as err:
            fallback = "%s (%s); decided on the local store" % (err.detail, err.reason)
        self.local = self.open_local()
        result = self.local.change_many(keys, change, now)
        self.degraded = "; ".join(filter(None, (fallback, self.local.degraded)))
        return result

    def close(self):
        self.shared.close()
        if self.local is not None:
            self.local.close()


def local_store(settings, deadline=None):
    """The store kept in GL_DIR that GL_STORE names (sqlite for redis)."""
    kind = settings.store
    if kind in ("sqlite", "redis"):
        from qgrey.store.sqlite import SqliteStore
        store = SqliteStore(settings.dir, settings.lock_timeout, deadline)
    else:
        from qgrey.store.dbm import DbmStore
        store = DbmStore(settings.dir, settings.lock_timeout, deadline, kind)
    # settings.load checked GL_DIR already: one stat of it per decision.
    store.checked = getattr(settings, "directory_checked", False)
    return store


def open_store(settings, deadline=None, fallback=False):
    """The store GL_STORE names; kinds are imported only here. fallback:
    honour GL_ON_ERROR=local (the plugin does; the tools do not).
    Raises the StoreError of an unsafe GL_DIR (see settings.load), whatever
    the kind: nothing in such a directory is used, not even for Redis."""
    error = getattr(settings, "directory_error", None)
    if error is not None:
        raise StoreError(error.reason, error.detail)
    if settings.store != "redis":
        return local_store(settings, deadline)
    from qgrey import keys, policy
    from qgrey.store.redis import RedisStore

    def expiry(key, entry):
        return policy.expires_at(entry, settings, keys.kind(key))
    store = RedisStore(settings, expiry, deadline)
    if fallback and settings.on_error == "local":
        return FallbackStore(store, lambda: local_store(settings))
    return store
