"""The per-RCPT program that qmail-smtpd runs through qmail-spp: main() and
the decision's conductor.

One RCPT, from the environment to the reply:
  main()                      posix.environ -> request.from_environ() -> Request
  decide_rcpt(request, now)   who is not ours (GL_WHITELISTED, relay clients
                              and authenticated users: outbound(), rcpthosts)
                              -> request.settings -> request.listed (lists)
                              -> keys.wanted(request) -> store.change_many()
                              with policy.decide_request -> reply.Decision
  datastage.data_at_rcpt()    at GL_STAGE=data: the verdict goes into the
                              transaction's state instead of the reply
  reply.log_line()            one log line on stderr; the reply on stdout
The [data] run (GL_STAGE=data) is datastage.decide_data(request, now).

Never A (switches plugins off), never O (relays), never an exit status of
120 or a death by signal (both make qmail-smtpd answer a second time); see
qgrey.reply for the replies.

Only posix, time and the qgrey modules a decision needs are imported here.
"""
import posix
import time

from qgrey.reply import PROGRAM, Decision, greylisted, header, log_line, on_error, printable, skip
from qgrey.request import from_environ

# At most this many warning lines a run (the last may count the rest).
MAX_WARNINGS = 5


def outbound(request, now, reason):
    """A relay client or authenticated user: not greylisted; with GL_REVERSE
    the pair is recorded so that the remote address's reply passes."""
    if not request.sender or not request.recipient:
        return skip(reason)
    settings = request.settings
    if not settings.reverse:
        return skip(reason)
    if settings.directory_error is not None:  # not even the salt is read
        return skip(reason, "reply not recorded: " + settings.directory_error.detail)
    from qgrey import keys, policy
    from qgrey.store import StoreError, open_store
    store = None
    try:
        key = keys.reply_key(request.recipient, request.sender, settings, request.hashed)
        store = open_store(settings, fallback=True)
        store.change_many([key], lambda entries, now: (None, [policy.record_reply(entries[0], now, settings)]), now)
    except StoreError as err:
        return skip(reason, "reply not recorded: " + err.detail)
    except OSError as err:
        return skip(reason, "reply not recorded: salt: %s" % err.strerror)
    finally:
        if store is not None:
            store.close()
    return skip(reason)


def decide_rcpt(request, now, write=True):
    """The whole decision for one RCPT (a qgrey.request.Request) -> Decision.

    write=False (qgrey-admin explain): the same decision from the entries
    as stored, writing nothing; decision.consulted holds the (key, entry)
    pairs read and decision.identity what was learned of the client."""
    if request.whitelisted:
        return skip("whitelisted")
    if request.relay:
        return outbound(request, now, "relayclient")
    if request.authenticated:
        return outbound(request, now, "authenticated")
    if request.outside_rcpthosts:
        return skip("rcpthosts")
    if request.recipient is None:
        return skip("no-recipient", "SMTPRCPTTO is not set: list qgrey under [rcpt] in control/smtpplugins")

    settings = request.settings
    if settings.directory_error is not None:
        # Another user could have written the lists, config or salt: nothing
        # in GL_DIR is read, and GL_ON_ERROR (from the environment) answers.
        return on_error(settings.directory_error, settings)
    if request.client_ip is None and not settings.ignore_remoteip:
        return skip("no-remoteip", "TCPREMOTEIP is not set: run qmail-smtpd under tcpserver")
    whitelisted, greytrap = request.listed
    if whitelisted:
        return skip(whitelisted)

    from qgrey import keys, policy
    from qgrey.store import StoreError, open_store
    try:
        request.hashed
    except OSError as err:
        return on_error(StoreError("io", "salt: %s" % err.strerror), settings)
    wanted, kind = keys.wanted(request, greytrap)
    # GL_SPF=1, GL_GREYLIST=suspicious|trial, GL_HOST_NAMES=dns with pools:
    # the client's identity may change the keys or the verdict. It is
    # learned from DNS only on a miss: first the triplet is read by the key
    # known without DNS (its network, or its tcpserver host pool); a known
    # sender is decided there and then, without a query.
    # A client not whitelisted by address whose name GL_HOST_NAMES=dns must
    # verify (lists.check_lists: names_deferred) is checked by name only
    # when the database would refuse it: a miss, or a greylisting.
    deferred = getattr(request, "names_deferred", None)
    learning = request.client_ip is not None and (
        settings.spf or settings.greylist != "all" or deferred is not None
        or (settings.host_names == "dns" and settings.host_pools))
    caches = [None, None]
    domain = None
    if learning and settings.spf and request.pool is None and not settings.ignore_remoteip:
        domain = keys.spf_domain(request.sender, request.helo)
        if domain:  # a pooling pass for this domain of the client's network or address
            for i, unit in enumerate(keys.spf_units(request.client_ip, settings)):
                caches[i] = keys.spf_key(unit, domain, request.hashed)
    # GL_HOST_NAMES=dns: a name qgrey confirmed for this address within a
    # day is recorded (name ADDRESS>HOST). It is read with the network key
    # under the names the request gives without DNS, TCPREMOTEHOST and the
    # HELO name: one of them recorded is the verified name, with no query.
    names = []
    if learning and settings.host_names == "dns" and not settings.ignore_remoteip and (
            settings.greylist != "all" or settings.host_pools or deferred is not None):
        for raw in (request.client_host, request.helo):
            name = keys.host_name(raw)
            if name is not None and name not in names:
                names.append(name)
    name_keys = [keys.name_key(request.client_ip, name, request.hashed) for name in names]
    consulted = []
    read_first = []  # the entries phase 1 read

    def change(entries, now, trusted=False, records=()):
        """records: (index, kind, entry) of a cache entry to write (an SPF
        pass, a verified name) unless one of that kind is still there."""
        action, reason, new, waited, note = policy.decide_request(
            entries[:5], now, settings, kind, greytrap, trusted)
        new += entries[5:]
        for index, record_kind, entry in records:
            if entries[index] is None or policy.expired(entries[index], now, settings, record_kind):
                new[index] = entry
        return (action, reason, waited, note), new

    # A pool learned from DNS would hold the greytrap entries too: a trap
    # hit or a trapped network is then decided by the final keys (an
    # auto-whitelisted pool is not trapped by one host's greytrap hit).
    pooling = not settings.ignore_remoteip and (
        (settings.spf and request.pool is None)
        or (settings.host_names == "dns" and settings.host_pools))
    missed = MISSED + TRAPS if pooling else MISSED

    def first(entries, now):
        read_first[:] = entries
        outcome, new = change(entries, now)
        reason = outcome[1]
        if reason == "learning" and outcome[3]:
            reason = outcome[3][len(LEARNING_NOTE):]
        if learning and reason in missed:  # nothing written: the identity decides
            passes = [e for e in entries[5:7] if e is not None
                      and not policy.expired(e, now, settings, keys.SPF)]
            return (MISS, passes[0] if passes else None), list(entries)
        return outcome, new

    degraded = []

    def run(keys_read, change):
        # A store of its own for each phase: its lock deadline starts when it
        # is opened, after the DNS work, and nothing is held during that work.
        store = open_store(settings, fallback=True)
        try:
            if write:
                return store.change_many(keys_read, change, now)
            entries = store.lookup_many(keys_read)
            consulted.extend(zip(keys_read, entries))
            return change(entries, now)[0]
        finally:
            store.close()
            if store.degraded:
                degraded.append(store.degraded)

    def recorded_pass(entry):
        return entry is not None and write and settings.greylist == "all" \
            and not (settings.host_names == "dns" and settings.host_pools)

    evidence = spf_result = None
    try:
        outcome = run(wanted + caches + name_keys, first)
        for name, entry in zip(names, read_first[7:]):
            if entry is not None and not policy.expired(entry, now, settings, keys.NAME):
                request.__dict__["verified_host"] = name  # recorded: no query
                request.verified_how = RECORDED
                break
        if deferred is not None and outcome[0] in (MISS, policy.GREYLIST):
            from qgrey.lists import client_listed
            if client_listed(deferred, None, request.verified_host):
                return skip("whitelist-client")
        if outcome[0] == MISS and recorded_pass(outcome[1]):
            # A pooled sender's pass recorded for this client's network or
            # address: its pool is known without DNS, and nothing else needs
            # the identity.
            request.pool = keys.spf_pool(domain)
            outcome = run(keys.wanted(request, greytrap)[0] + [None], change)
            spf_result = "pass"
        elif outcome[0] == MISS:  # learn who the client is, then decide
            from qgrey import identity
            evidence = identity.learn(request, outcome[1])
            request.pool = evidence.pool if not settings.ignore_remoteip else None
            final, kind = keys.wanted(request, greytrap)
            trusted = settings.greylist == "suspicious" and evidence.suspicious is False
            records = []
            recorded = None
            if evidence.spf_pooled:
                recorded = keys.spf_key(evidence.spf_unit, domain, request.hashed)
                records.append((5, keys.SPF, policy.Entry(now, now, now, 1)))
            named = None
            if request.__dict__.get("verified_how") == "dns" and request.verified_host:
                named = keys.name_key(request.client_ip, request.verified_host, request.hashed)
                records.append((6, keys.NAME, policy.Entry(now, now, now, 1)))
            outcome = run(final + [recorded, named],
                          lambda entries, now: change(entries, now, trusted, records))
            spf_result = evidence.spf_text
        action, reason, waited, note = outcome
    except StoreError as err:
        return on_error(err, settings)
    if degraded:
        note = "; ".join(filter(None, [note] + degraded))
    if action == policy.GREYLIST:
        decision = Decision(action, reason, greylisted(settings), waited, note)
    else:
        decision = Decision(action, reason, header(reason, waited, now) if request.first_recipient
                            else b"", waited, note)
    decision.stage = settings.stage
    decision.pool = request.pool
    decision.consulted = consulted
    decision.spf = spf_result
    if evidence is not None:
        decision.identity = evidence
        if settings.greylist == "trial" and action == policy.GREYLIST:
            decision.trial = "suspicious" if evidence.suspicious else "trusted"
        if evidence.suspicious is False and (reason == "trusted" or decision.trial):
            decision.name = evidence.name or "-"  # the evidence
            decision.helo = evidence.helo_name
    return decision


# The reasons of a triplet the rules refuse as new to them: a miss by the
# key known without DNS (as such, or as learning mode notes it).
MISS = "miss"
MISSED = ("new", "expired")
RECORDED = "dns (recorded)"  # how a name recorded within a day was verified
TRAPS = ("greytrap", "trapped")
LEARNING_NOTE = "would greylist: "  # policy.decide_request's note in learning mode


def decide(environ, now, problems):
    """decide_rcpt for an environment (a bytes mapping); warnings go to problems."""
    return decide_rcpt(from_environ(environ, "rcpt", problems), now)


def _after_error(request, environ):
    """The reply of a run that failed inside: see datastage.after_internal_error."""
    try:
        if request is None:
            if b"QGREY_DATA" not in environ:
                return b""
            raise ValueError("no request")
        if request.state is None:
            return b""
        from qgrey import datastage
        return datastage.after_internal_error(request)
    except BaseException:
        return b"UQGREY_DATA\n"


def _write(fd, data):
    try:
        while data:
            data = data[posix.write(fd, data):]
    except OSError:  # stdout or stderr closed: nothing better to do
        pass


def main(stage="rcpt"):
    """stage: "rcpt", or "data" for the [data] launcher (GL_STAGE=data)."""
    posix.umask(0o077)
    # A file size limit must fail a write, not kill the process: a death by
    # signal makes qmail-smtpd answer a second time. (_signal is loaded at
    # start-up already; the signal module would import enum and more.)
    import _signal
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    environ = posix.environ
    problems = []
    request = None
    try:
        request = from_environ(environ, stage, problems)
        if stage == "data":
            from qgrey import datastage
            decision = datastage.decide_data(request, int(time.time()))
        else:
            decision = decide_rcpt(request, int(time.time()))
            if decision.stage == "data" or request.state is not None:
                from qgrey import datastage
                decision = datastage.data_at_rcpt(decision, request)
        log = log_line(decision, request)
    except BaseException as err:  # never a traceback: accept, say why in one line
        decision = Decision("error", "internal", _after_error(request, environ))
        try:
            detail = printable(repr(err)[:200])
        except BaseException:
            detail = type(err).__name__
        log = "%s: action=error reason=internal detail=%s\n" % (PROGRAM, detail)
    shown = problems if len(problems) <= MAX_WARNINGS else problems[:MAX_WARNINGS - 1] + [
        "%d more warnings not shown" % (len(problems) - MAX_WARNINGS + 1)]
    for problem in shown:
        _write(2, ("%s: warning: %s\n" % (PROGRAM, problem)).encode("ascii", "replace"))
    _write(2, log.encode("ascii", "replace"))
    _write(1, decision.reply)
    # No buffered stdout to flush at exit, so no exit status 120.
    posix._exit(0)
