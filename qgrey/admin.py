"""qgrey-admin: look at and change the greylisting database.

Subcommands: list (show), allow, delete, stats, dump, load, check, spf,
explain.
Settings come from the environment and GL_DIR/config, as for the plugin.
Run as root, it works with the ids of GL_DIR's owner (tool.become_owner),
taken after a dump or load FILE is opened and before anything in GL_DIR is
read; check --user takes that user's ids instead.

Exit status: 0 done; 1 nothing matched (delete) or check found a problem;
100 usage or bad input (including a damaged database); 111 temporary
failure (lock timeout, I/O; spf: temperror).
"""
import argparse
import os
import sys
import time

from qgrey import files, keys, lists, policy, settings as settings_module, tool
from qgrey.store import open_store
from qgrey.tool import Failure

PROGRAM = "qgrey-admin"
DUMP_HEADER = "qgrey-dump 1"
BATCH = 1000
STATES = ("waiting", "passed", "expired", "counting", "whitelisted", "trapped", "reply",
          "recorded")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Failure("usage: %s (see %s --help)" % (message, self.prog))


# Pure helpers

def ago(seconds):
    """Seconds in the past -> '5m ago', '3d ago'; negative -> 'in 5m'."""
    future = seconds < 0
    seconds = abs(int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "d" else 1):
            text = "%d%s" % (seconds // size, unit)
            break
    else:
        text = "%ds" % seconds
    return "in " + text if future else text + " ago"


KEY_SPACES = (keys.CLIENT, keys.TRAP, keys.REPLY, keys.SPF, keys.NAME)


def is_triplet(key):
    return keys.kind(key) in (keys.TRIPLET, keys.BOUNCE)


def state(key, entry, now, settings):
    """waiting, passed (triplets), counting, whitelisted (auto-whitelisting
    of a client), trapped (greytrap), reply (reverse tracking), recorded (an
    SPF pass or a verified host name), or expired."""
    kind = keys.kind(key)
    if policy.expired(entry, now, settings, kind):
        return "expired"
    if kind == keys.CLIENT:
        return "whitelisted" if entry.passed else "counting"
    if kind == keys.TRAP:
        return "trapped"
    if kind == keys.REPLY:
        return "reply"
    if kind in (keys.SPF, keys.NAME):
        return "recorded"
    return "passed" if entry.passed else "waiting"


def client_network(text):
    """'198.51.100.7', '198.51.100.0/24', '2001:db8::/48' -> canonical network."""
    address, slash, prefix = text.partition("/")
    raw = address.encode("ascii", "replace")
    v4 = keys.parse_ipv4(raw)
    if v4 is not None:
        width, value = 32, v4
    else:
        value = keys.parse_ipv6(raw) if b":" in raw else None
        if value is None:
            raise Failure("not an IP address or network: %s" % settings_module.sanitise(text))
        width = 128
    if slash:
        if not prefix.isdigit() or not 0 <= int(prefix) <= width:
            raise Failure("bad prefix length in %s" % settings_module.sanitise(text))
        bits = int(prefix)
    else:
        bits = width
    value = value >> (width - bits) << (width - bits) if bits else 0
    text = keys.format_ipv4(value) if width == 32 else keys.format_ipv6(value)
    return "%s/%d" % (text, bits)


def dump_line(key, entry):
    return "%s\t%d\t%d\t%d\t%d\n" % ((key,) + entry.fields())


# Bounds of a dump line's values: a time at most 9999-12-31 23:59:59 UTC;
# tries within 31 bits; a key of at most 4,096 characters (the longest the
# plugin makes has 1,791: a pool name and two escaped 256-byte addresses).
LATEST = 253402300799
MAX_TRIES = (1 << 31) - 1
MAX_KEY = 4096
MAX_DUMP_LINE = MAX_KEY + 64


def parse_dump_line(line, number):
    fields = line.rstrip("\n").split("\t")
    if len(fields) != 5:
        raise Failure("line %d: not KEY<TAB>first<TAB>last<TAB>passed<TAB>tries" % number)
    key = fields[0]
    if not key or not all(" " <= c <= "~" for c in key) or "  " in key or key.strip() != key:
        raise Failure("line %d: bad key" % number)
    if not (is_triplet(key) or (key.count(" ") == 1 and keys.kind(key) in KEY_SPACES)):
        raise Failure("line %d: key is neither a triplet nor a %s entry" % (number, ", ".join(KEY_SPACES)))
    if len(key) > MAX_KEY:
        raise Failure("line %d: key longer than %d characters" % (number, MAX_KEY))
    if not all(f.isdigit() and f.isascii() for f in fields[1:]):
        raise Failure("line %d: times and tries must be whole numbers" % number)
    # What a store keeps and every tool can show: refused here, in the
    # first pass, never by the store half-way through the load.
    for name, value, top in zip(("first", "last", "passed", "tries"), fields[1:],
                                (LATEST, LATEST, LATEST, MAX_TRIES)):
        if len(value) > 20 or int(value) > top:
            raise Failure("line %d: %s=%s is more than %d%s" % (
                number, name, value if len(value) <= 24 else value[:20] + "...", top,
                " (9999-12-31 23:59:59 UTC)" if top == LATEST else ""))
    return key, policy.Entry(*map(int, fields[1:]))


def triplet_key(args, settings):
    if args.key:
        if args.triplet:
            raise Failure("give either --key or CLIENT SENDER RECIPIENT")
        return args.key
    if len(args.triplet) != 3:
        raise Failure("give CLIENT SENDER RECIPIENT (as in the envelope; <> for the null sender) or --key")
    client, sender, recipient = (os.fsencode(v) for v in args.triplet)
    return keys.triplet(client, b"" if sender == b"<>" else sender, recipient, settings)


def printable(text):
    """text with anything but printable ASCII shown as '?' (for a terminal)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


# A list larger than this is not one qgrey-admin edits.
LIST_LIMIT = 16 << 20


def add_line(path, line):
    """Append line to a list file unless it is there -> whether it was added.

    The list is read without following a link: a list that is a symbolic
    link (to a file kept elsewhere, say) is refused with one line naming
    the file to edit. The new list is written under a random name
    (files.replace), 0644 so that the plugin's user reads it, and renamed
    into place; run as root, it is given to the directory's owner on its
    descriptor. Root never copies into it a list only root could read."""
    directory = os.path.dirname(path) or "."
    owner = os.stat(directory)
    try:
        fd, st = files.open_regular(path, owners=(0, owner.st_uid))
    except FileNotFoundError:
        text = b""
    except OSError as err:
        if os.path.islink(path):
            raise Failure("%s is a symbolic link to %s: add %s to that file instead "
                          "(qgrey-admin does not write through links)"
                          % (path, printable(os.readlink(path)), line))
        raise Failure("cannot read %s: %s" % (path, files.describe(err)))
    else:
        try:
            if os.geteuid() == 0 and not st.st_mode & 0o004:
                raise Failure("%s is readable only by its owner: qgrey-admin run as root does "
                              "not copy it into a list others can read; fix: chmod 644 %s "
                              "(the plugin's user must read it)" % (path, path))
            text = files.read_fd(fd, LIST_LIMIT, path)
        except files.Refused as err:
            raise Failure("cannot read %s: %s" % (path, files.describe(err)))
        finally:
            os.close(fd)
    if line.encode() in (row.split(b"#")[0].strip() for row in text.splitlines()):
        return False
    if text and not text.endswith(b"\n"):
        text += b"\n"
    files.replace(path, text + line.encode() + b"\n", mode=0o644,
                  owner=(owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None)
    return True


def scan_all(store):
    return store.entries(BATCH)


# Subcommands

def cmd_list(args, settings, store, out):
    now = int(time.time())
    client = None
    fields = ()  # the client fields of its other entries (auto-whitelist, trap, spf, name)
    if args.client:
        if "/" in args.client:
            client = client_network(args.client)
            fields = (client,)
        else:
            raw = args.client.encode()
            client = keys.client(raw, settings)
            fields = (client, keys.awl_client(raw, settings)) + keys.spf_units(raw, settings)
    sender = args.sender and (args.sender if args.sender.startswith("@") else keys.address(
        b"" if args.sender == "<>" else args.sender.encode()))
    recipient = args.recipient and (args.recipient if args.recipient.startswith("@") else
                                    keys.address(args.recipient.encode()))

    def match(field, wanted):
        return not wanted or (field.endswith(wanted.lower()) if wanted.startswith("@") else field == wanted)

    shown = 0
    if not args.no_header:
        out.write("%-11s %-9s %-9s %-9s %5s  %s\n" % (
            "STATE", "FIRST", "LAST", "PASSED", "TRIES", "CLIENT SENDER RECIPIENT"))
    for key, entry in scan_all(store):
        what = state(key, entry, now, settings)
        if args.state and what != args.state:
            continue
        if is_triplet(key):
            k_client, k_sender, k_recipient = key.split(" ")
            if client and k_client != client:
                continue
            if not (match(k_sender, sender) and match(k_recipient, recipient)):
                continue
        else:  # client, trap: "kind CLIENT"; spf, name: "kind CLIENT>NAME"; reply: "reply REMOTE>LOCAL"
            field = key.split(" ")[1]
            if keys.kind(key) in (keys.SPF, keys.NAME):
                field = field.partition(">")[0]
            if sender or recipient or (client and field not in fields):
                continue
        age = now - entry.first
        if args.older_than is not None and age <= args.older_than:
            continue
        if args.newer_than is not None and age >= args.newer_than:
            continue
        out.write("%-11s %-9s %-9s %-9s %5d  %s\n" % (
            what, ago(age), ago(now - entry.last),
            ago(now - entry.passed) if entry.passed else "-", entry.tries, key))
        shown += 1
        if args.limit and shown >= args.limit:
            break
    return 0


def cmd_allow(args, settings, store, out):
    now = int(time.time())
    if args.client:
        if args.key or args.triplet:
            raise Failure("give either --client or a triplet")
        network = client_network(args.client)
        path = os.path.join(settings.dir, lists.CLIENTS)
        added = add_line(path, network)
        out.write("%s %s in %s\n" % ("whitelisted" if added else "already whitelisted", network, path))
        return 0
    key = triplet_key(args, settings)

    def release(entry):
        if entry is None:
            return "added", policy.Entry(now, now, now, 0)
        if entry.passed and not policy.expired(entry, now, settings):
            return "already passed", entry
        return "released", policy.Entry(entry.first, now, now, entry.tries)
    out.write("%s %s\n" % (store.update(key, release), key))
    return 0


def cmd_delete(args, settings, store, out):
    if args.client:
        if args.key or args.triplet:
            raise Failure("give either --client or a triplet")
        client = keys.client(args.client.encode(), settings)
        awl = keys.awl_client(args.client.encode(), settings)  # GL_AWL_UNIT
        # and the network's entry of before GL_AWL_UNIT, which passes it too
        targets = [keys.client_key(awl)] + [keys.client_key(client)] * (awl != client) + [
            keys.trap_key(client)]
    else:
        targets = [triplet_key(args, settings)]
    found = False
    for key in targets:
        if store.update(key, lambda entry: (entry is not None, None if entry else entry)):
            out.write("deleted %s\n" % key)
            found = True
    if not found:
        out.write("no such entry %s\n" % " or ".join(targets))
    return 0 if found else 1


AGE_BUCKETS = ((3600, "< 1h"), (86400, "< 1d"), (7 * 86400, "< 7d"), (30 * 86400, "< 30d"),
               (None, ">= 30d"))


def bar(count, total, width=40):
    return "#" * (int(round(width * count / float(total))) if total else 0)


def cmd_stats(args, settings, store, out):
    now = int(time.time())
    counts = dict.fromkeys(STATES, 0)
    never = 0
    ages = [0] * len(AGE_BUCKETS)
    total = 0
    for key, entry in scan_all(store):
        total += 1
        counts[state(key, entry, now, settings)] += 1
        if is_triplet(key) and policy.waiting_over(entry, now, settings):
            never += 1
        age = now - entry.first
        for i, (limit, _) in enumerate(AGE_BUCKETS):
            if limit is None or age < limit:
                ages[i] += 1
                break
    out.write("entries %d\n" % total)
    for name in STATES:
        out.write("  %-12s %d\n" % (name, counts[name]))
    out.write("never came back (retry window over, not retried) %d\n" % never)
    out.write("age (since first seen)\n")
    for (_, label), count in zip(AGE_BUCKETS, ages):
        out.write("  %-7s %8d %s\n" % (label, count, bar(count, total)))
    return 0


def cmd_dump(args, settings, store, out):
    target = args.stream or out  # FILE is opened by run, before it takes GL_DIR owner's ids
    target.write(DUMP_HEADER + "\n")
    for key, entry in scan_all(store):
        target.write(dump_line(key, entry))
    target.flush()
    return 0


def read_dump(lines):
    """Validate and yield (key, entry) from an iterable of dump lines."""
    for number, line in enumerate(lines, 1):
        if len(line) >= MAX_DUMP_LINE and not line.endswith("\n"):
            raise Failure("line %d: longer than %d characters" % (number, MAX_DUMP_LINE))
        if number == 1:
            if line.rstrip("\n") != DUMP_HEADER:
                raise Failure("line 1: not a qgrey dump (want the header %r)" % DUMP_HEADER)
            continue
        if line.strip():
            yield parse_dump_line(line, number)


def cmd_load(args, settings, store, out):
    if args.file in (None, "-"):
        lines = list(iter(lambda: sys.stdin.readline(MAX_DUMP_LINE), ""))
        source = lambda: iter(lines)  # noqa: E731
    else:
        def source():  # FILE, opened by run before it takes GL_DIR owner's ids
            args.stream.seek(0)
            return iter(lambda: args.stream.readline(MAX_DUMP_LINE), "")
    # A first pass checks every line, so that a bad file changes nothing.
    count = 0
    stream = source()
    for _ in read_dump(stream):
        count += 1
    batch = []
    written = 0
    stream = source()
    for item in read_dump(stream):
        batch.append(item)
        if len(batch) >= BATCH:
            written += store.put_many(batch)
            batch = []
    if batch:
        written += store.put_many(batch)
    out.write("loaded %d entries" % count)
    if written < count:  # a store with TTLs does not write what has expired
        out.write(" (%d no longer needed by the rules, not written)" % (count - written))
    out.write("\n")
    return 0


def cmd_check(args, environ, out):
    """check loads the settings itself, as the user it checks as."""
    from qgrey import check
    return check.run(environ, args.user, out, smtpplugins=args.smtpplugins)


def cmd_spf(args, settings, out):
    """SPF for a client, with the plugin's resolver and settings (GL_DNS,
    GL_DNS_TIMEOUT): the result as the first word, then the term that
    decided, the domain whose record did, the client field of the key
    qgrey would use with GL_SPF=1 (key=spf:DOMAIN or its network) and, for
    a pooling pass, what the pass is recorded for (recorded=NETWORK when
    the result holds for the client's whole network, else its address).
    Exit 111 on temperror."""
    from qgrey import identity, spf
    if spf.parse_ip(args.ip) is None:
        raise Failure("usage: %s is not an IP address" % settings_module.sanitise(args.ip))
    sender = "" if args.sender == "<>" else args.sender
    if not sender and not args.helo:
        raise Failure("usage: the null sender <> is checked as postmaster@HELO: give HELO")
    result = spf.check_host(args.ip, None, sender, args.helo or "", identity.resolver(settings))
    line = spf_words(result)
    # The key GL_SPF=1 gives the client: the sender's domain's pool, or its network.
    checked = keys.spf_domain(sender.encode("ascii", "replace"), (args.helo or "").encode(
        "ascii", "replace"))
    pool = identity.pool_of(result, args.ip, checked)
    line.append("key=" + (pool or keys.client(args.ip.encode(), settings)))
    if pool:  # what the pass is recorded for: a network the record covers alike, or the address
        line.append("recorded=" + keys.spf_unit(args.ip.encode(), settings, result.scope))
    if result.reason:
        line.append("(%s)" % result.reason)
    if result.explanation:
        line.append("explanation=%s" % result.explanation)
    out.write("".join(c if " " <= c <= "~" else "?" for c in " ".join(line)) + "\n")
    return 111 if result.result == spf.TEMPERROR else 0


def spf_words(result):
    """An SPF result as qgrey-admin shows it: the result, then the term that
    decided and the domain whose record holds it, when there are such."""
    return [result.result] + ["%s=%s" % (name, value) for name, value in (
        ("term", result.term), ("domain", result.domain)) if value]


def explain_request(args, settings, environ):
    """The plugin's request for explain's arguments, as qmail-smtpd would
    give it for the first recipient of an inbound message."""
    from qgrey import request
    if keys.parse_ipv4(os.fsencode(args.ip)) is None and (
            ":" not in args.ip or keys.parse_ipv6(os.fsencode(args.ip)) is None):
        raise Failure("usage: %s is not an IP address" % settings_module.sanitise(args.ip))
    env = {b"TCPREMOTEIP": os.fsencode(args.ip),
           b"SMTPMAILFROM": b"" if args.sender == "<>" else os.fsencode(args.sender),
           b"SMTPRCPTTO": os.fsencode(args.recipient),
           b"SMTPRCPTCOUNT": b"0", b"SMTPRCPTCOUNTALL": b"1", b"SMTPRCPTHOSTSOK": b"1"}
    if args.helo is not None:
        env[b"SMTPHELOHOST"] = os.fsencode(args.helo)
    if args.host is not None:
        env[b"TCPREMOTEHOST"] = os.fsencode(args.host)
    found = request.from_environ(env, "rcpt", [])
    found.__dict__["settings"] = settings  # loaded once, its warnings said once
    return found


def entry_text(key, entry, now, settings):
    if entry is None:
        return "none"
    return "%s, first %s, last %s, passed %s, tries %d" % (
        state(key, entry, now, settings), ago(now - entry.first), ago(now - entry.last),
        ago(now - entry.passed) if entry.passed else "-", entry.tries)


def delay_left(decision, read, now, settings):
    """What explain says of the delay still to wait."""
    if decision.action != policy.GREYLIST:
        return "none"
    if decision.reason in ("new", "expired"):
        return "%s from this attempt (GL_DELAY; explain records nothing)" % span(settings.delay)
    triplets = [(k, e) for k, e in read if e is not None and is_triplet(k)]
    if decision.reason in ("early", "punished") and triplets:
        entry = triplets[0][1]
        left = max(0, entry.first + policy.required_delay(entry, settings) - now)
        return "%s (a retry from %s UTC passes)" % (span(left), time.strftime(
            "%Y-%m-%d %H:%M:%S", time.gmtime(now + left)))
    traps = [e for k, e in read if e is not None and keys.kind(k) == keys.TRAP]
    if decision.reason == "trapped" and traps:
        return "until %s UTC, when the trap entry expires (GL_TRAP_TIME)" % time.strftime(
            "%Y-%m-%d %H:%M:%S", time.gmtime(policy.expires_at(traps[0], settings, keys.TRAP)))
    return "none: greylisted whatever the wait (%s)" % decision.reason


def span(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return "%dh%02dm%02ds" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)
    return "%dm%02ds" % (seconds // 60, seconds % 60)


def answer_text(decision):
    reply = decision.reply.decode("ascii", "replace").rstrip("\n")
    if decision.action == policy.GREYLIST:
        return "greylist (reason=%s): %s" % (decision.reason, reply[1:])
    if decision.action == policy.PASS:
        return "accept (reason=%s): adds %s" % (decision.reason, reply[1:].partition(" by qgrey")[0])
    if decision.action == policy.SKIP:
        return "not greylisted (reason=%s): no answer, qmail-smtpd decides" % decision.reason
    return "%s (reason=%s): %s" % (decision.action, decision.reason,
                                  "answers " + reply if reply else "no answer")


def cmd_explain(args, settings, environ, out):
    """What the plugin would answer now for IP SENDER RECIPIENT, and why:
    its own decision (plugin.decide_rcpt with write=False), writing nothing."""
    from qgrey import identity as identity_module, plugin
    now = int(time.time())
    request = explain_request(args, settings, environ)
    decision = plugin.decide_rcpt(request, now, write=False)
    for problem in request.problems:
        sys.stderr.write("%s: warning: %s\n" % (PROGRAM, problem))
    read, seen = [], set()
    for key, entry in decision.consulted:
        if key is not None and key not in seen:
            seen.add(key)
            read.append((key, entry))
    lines = ["explain: client %s sender %s recipient %s at %s UTC" % (
        printable(args.ip), printable(args.sender), printable(args.recipient),
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)))]
    lines.append("answer: " + answer_text(decision))
    if decision.stage == "data" and decision.action in (policy.GREYLIST, policy.PASS):
        from qgrey.datastage import NOT_REFUSED_AT_DATA
        if decision.reason not in NOT_REFUSED_AT_DATA:
            lines.append("stage: GL_STAGE=data: the RCPT is accepted and this answer "
                         "given at DATA")
    if decision.detail:
        lines.append("detail: " + printable(decision.detail))
    lines.append("delay left: " + delay_left(decision, read, now, settings))
    lines.append("keys read:" if read else "keys read: none (decided before the database)")
    lines += ["  %s%s: %s" % ("triplet " if is_triplet(key) else "", key,
                              entry_text(key, entry, now, settings)) for key, entry in read]
    found = decision.identity
    if found is None:  # not needed for the answer: learned here to show it
        lines.append("identity: not needed for this answer; learned by explain alone")
        found = identity_module.Identity()
        if settings.spf:
            found.spf = request.spf
            found.spf_text = found.spf.result if found.spf is not None else None
    if found.how is None:  # the decision needed no name (GL_GREYLIST=all)
        found.name, found.how = request.verified_host, request.verified_how
    if found.suspicious is None:
        found.suspicious, found.why = identity_module.suspicious(request, found)
    lines.append("name: %s, verified by %s" % (found.name, found.how) if found.name else
                 "name: none verified (%s)" % found.how)
    if found.name is None:
        lines.append("dynamic-name rule: no verified name to judge")
    else:
        if found.dynamic is None and found.why != "name":
            found.dynamic = identity_module.refusal(found.name, request.client_ip or b"")
        lines.append("dynamic-name rule: " + (("refused: " + found.dynamic) if found.dynamic
                                               else "not dynamic"))
    if not request.helo:
        lines.append("HELO: none given")
    elif found.helo is None:
        lines.append("HELO: %s: not checked (the verified name is enough)"
                     % printable(os.fsdecode(request.helo)))
    else:
        lines.append("HELO: %s: %s" % (printable(os.fsdecode(request.helo or b"")),
                                       "confirms the client" if found.helo[0] else found.helo[1]))
    if not settings.spf:
        lines.append("SPF: not evaluated (GL_SPF=0)")
    elif found.spf_cached:
        lines.append("SPF: pass (recorded for this client's network or address and this "
                     "domain: no evaluation)")
    elif found.spf is not None:
        spf_line = "SPF: " + " ".join(spf_words(found.spf))
        if found.spf.reason:
            spf_line += " (%s)" % found.spf.reason
        if found.pool_reason:
            spf_line += " (proves nothing: %s)" % found.pool_reason
        if found.spf_unit:
            spf_line += " recorded=" + found.spf_unit
        lines.append(printable(spf_line))
    else:
        lines.append("SPF: not evaluated (%s)" % found.spf_text)
    pool = decision.pool or request.pool
    lines.append("pool: %s" % pool if pool else "pool: none: keyed by the network %s" % (
        keys.client(request.client_ip, settings)))
    verdict = ("suspicious (%s)" % found.why) if found.suspicious else ("trusted (%s)" % found.why)
    lines.append({
        "all": "mode: GL_GREYLIST=all: every new triplet is greylisted; suspicious would find "
               "the client %s",
        "trial": "mode: GL_GREYLIST=trial: greylisted as all; suspicious would find the client %s",
        "suspicious": "mode: GL_GREYLIST=suspicious: the client is %s",
    }[settings.greylist] % verdict)
    out.write("".join(line + "\n" for line in lines))
    return 0


def duration_arg(text):
    try:
        return settings_module.duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err))


def parser():
    top = Parser(prog=PROGRAM, description="Look at and change the qgrey database (GL_DIR).")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("list", aliases=["show"], help="list entries",
                       description="List entries, filtered; times are relative to now.")
    p.add_argument("--client", help="client address (matched as the plugin keys it), network, "
                   "or host pool (GL_HOST_POOLS)")
    p.add_argument("--sender", help="sender address, <> for the null sender, or @domain")
    p.add_argument("--recipient", help="recipient address or @domain")
    p.add_argument("--state", choices=STATES)
    p.add_argument("--older-than", type=duration_arg, metavar="AGE", help="first seen longer ago (300, 5m, 2d)")
    p.add_argument("--newer-than", type=duration_arg, metavar="AGE", help="first seen more recently")
    p.add_argument("--limit", type=int, default=0, help="show at most this many")
    p.add_argument("--no-header", action="store_true")
    p.set_defaults(run=cmd_list)

    for name, run, text in (("allow", cmd_allow, "pass a triplet now, or whitelist a client"),
                            ("delete", cmd_delete, "delete an entry")):
        p = sub.add_parser(name, help=text, description=text.capitalize() + ". A triplet is given "
                           "as in the envelope (CLIENT SENDER RECIPIENT, <> for the null sender) "
                           "or as a key printed by list (--key).")
        p.add_argument("triplet", nargs="*", metavar="CLIENT SENDER RECIPIENT")
        p.add_argument("--key", help="the key as list prints it")
        p.add_argument("--client", metavar="ADDRESS[/PREFIX]", help=(
            "allow: add this address or network to GL_DIR/whitelist-clients (permanent); "
            "delete: forget the client's (an address, or a host pool) auto-whitelisting and "
            "greytrap entries"))
        p.set_defaults(run=run)

    p = sub.add_parser("stats", help="counts by state and age", description="Counts by state and age.")
    p.set_defaults(run=cmd_stats)
    p = sub.add_parser("dump", help="write the database as text",
                       description="Write every entry as text: a header line '%s', then "
                       "KEY<TAB>first<TAB>last<TAB>passed<TAB>tries in key order." % DUMP_HEADER)
    p.add_argument("file", nargs="?", help="output file (default: stdout)")
    p.set_defaults(run=cmd_dump)
    p = sub.add_parser("load", help="add the entries of a dump",
                       description="Add (or overwrite) the entries of a dump; the whole file is "
                       "checked before anything is written.")
    p.add_argument("file", nargs="?", help="dump file (default: stdin)")
    p.set_defaults(run=cmd_load)
    p = sub.add_parser("check", help="check settings, permissions and the database",
                       description="Check that the plugin will work: settings, permissions of "
                       "GL_DIR and its files, database integrity. Exit 0 only if it will.")
    p.add_argument("--user", help="check as this user (the one qmail-smtpd runs as)")
    p.add_argument("--smtpplugins", metavar="PATH", help="qmail-spp's plugin list to check "
                   "qgrey's entries in (default: /var/qmail/control/smtpplugins)")
    p.set_defaults(run=cmd_check)
    p = sub.add_parser("spf", help="evaluate SPF for a client and sender",
                       description="Evaluate SPF (RFC 7208) as qgrey does, with GL_DNS and "
                       "GL_DNS_TIMEOUT. Prints the result first (pass, fail, softfail, neutral, "
                       "none, temperror, permerror), then term= (what decided it) and domain= "
                       "(the domain whose record decided). Exit 0, or 111 on temperror.")
    p.add_argument("ip", metavar="IP", help="the client's address")
    p.add_argument("sender", metavar="SENDER", help="envelope sender, <> for the null sender")
    p.add_argument("helo", metavar="HELO", nargs="?", help="the client's HELO name "
                   "(the identity checked for the null sender)")
    p.set_defaults(run=cmd_spf)
    p = sub.add_parser("explain", help="what qgrey would answer now, and why",
                       description="What the plugin would answer now for a first recipient "
                       "from IP, and why: the keys and entries read, the verified host name "
                       "(GL_HOST_NAMES), the dynamic-name rule, the HELO check, SPF "
                       "(GL_SPF=1), the pool, suspicious or trusted, the delay left. The "
                       "plugin's own decision; nothing is written. Exit 0.")
    p.add_argument("ip", metavar="IP", help="the client's address")
    p.add_argument("sender", metavar="SENDER", help="envelope sender, <> for the null sender")
    p.add_argument("recipient", metavar="RECIPIENT", help="envelope recipient")
    p.add_argument("--helo", metavar="NAME", help="the client's HELO name (SMTPHELOHOST)")
    p.add_argument("--host", metavar="NAME", help="TCPREMOTEHOST, as tcpserver would set it")
    p.set_defaults(run=cmd_explain)
    return top


def open_named_file(args):
    """The dump or load FILE, opened while the tool still has the ids it was
    run with: root names its own paths. -> file object or None (stdio)."""
    name = getattr(args, "file", None)
    if name in (None, "-"):
        return None
    if args.run is cmd_dump:
        return open(name, "w", encoding="ascii")
    return open(name, encoding="ascii", errors="replace")


def run(argv, environ, out):
    args = parser().parse_args(argv)
    args.stream = open_named_file(args)
    try:
        if args.run is cmd_check:
            if args.user is None:  # with --user, check takes that user's ids itself
                tool.become_owner(settings_module.directory(environ))
            return cmd_check(args, environ, out)
        tool.become_owner(settings_module.directory(environ))
        settings = settings_module.load(environ)
        for problem in settings.problems:
            sys.stderr.write("%s: warning: %s\n" % (PROGRAM, problem))
        if args.run is cmd_spf:  # no database
            return cmd_spf(args, settings, out)
        if args.run is cmd_explain:  # the plugin's decision opens the store itself
            return cmd_explain(args, settings, environ, out)
        store = open_store(settings)
        try:
            return args.run(args, settings, store, out)
        finally:
            store.close()
    finally:
        if args.stream is not None:
            args.stream.close()


def main():
    tool.main(PROGRAM, run)


if __name__ == "__main__":
    main()
