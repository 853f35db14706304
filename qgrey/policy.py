"""The decision: (stored entry, now, settings) -> (action, reason, new entry, waited).

Pure: no environment, files or clock. qgrey-expire and the reports use the
same predicates (waiting_over, lifetime_over, expired).

An entry records one greylisting cycle of a triplet:
  first   when the triplet was first seen in this cycle (the delay runs from here)
  last    when it was last seen (refused attempt, or accepted delivery)
  passed  when its retry was accepted (0 while it is still waiting)
  tries   how many attempts were refused in this cycle

The other kinds of key (see keys.py) reuse the same four fields:
  client  first/last counted delivery, passed = when auto-whitelisted, tries = deliveries counted
  trap    first/last greytrap hit, passed = 0, tries = hits
  reply   first/last outbound message seen, passed = first, tries = messages counted
  spf     first = last = passed = when the client passed SPF in a way that pools it, tries = 1
  name    first = last = passed = when qgrey forward-confirmed the client's host name, tries = 1
decide_request() is the whole decision for one RCPT over all of them.
"""
from qgrey.keys import BOUNCE, CLIENT, NAME, REPLY, SPF, TRAP, TRIPLET
from qgrey.record import Entry  # noqa: F401  (the rules' record; policy.Entry for callers)

GREYLIST = "greylist"  # 451 now, come back later
PASS = "pass"          # accept (add a header)
SKIP = "skip"          # not ours to greylist: no answer at all

# An accepted delivery renews a passed entry's lifetime; writing that at most
# once an hour keeps the database write off the path of known senders.
# Auto-whitelisting counts at most one delivery per client in that time.
RENEW_AFTER = 3600

# GL_SPF=1: a client that passed SPF for a domain in a way that pools it is
# keyed by that domain's pool without a new evaluation for this long.
SPF_CACHE = 86400
# GL_HOST_NAMES=dns: a host name qgrey confirmed for a client's address is
# taken as verified without asking DNS again for this long.
NAME_CACHE = 86400


def waiting_over(entry, now, settings):
    """A waiting entry whose retry window has run out without a retry."""
    return not entry.passed and now - entry.first > settings.retry_window


def lifetime_over(entry, now, settings):
    """A passed entry not seen for longer than its lifetime."""
    return bool(entry.passed) and now - entry.last > settings.lifetime


def expired(entry, now, settings, kind=TRIPLET):
    """Whether an entry of this kind (keys.kind(key)) is of no more use."""
    if kind == TRIPLET:
        return waiting_over(entry, now, settings) or lifetime_over(entry, now, settings)
    if kind == BOUNCE:  # a bounce's pass does not last: one message, one recipient
        if entry.passed:
            return now - entry.passed > getattr(settings, "bounce_lifetime", 0)
        return waiting_over(entry, now, settings)
    if kind == TRAP:
        return now - entry.last >= getattr(settings, "trap_time", 0)
    if kind == SPF:
        return not 0 <= now - entry.first < SPF_CACHE
    if kind == NAME:
        return not 0 <= now - entry.first < NAME_CACHE
    return now - entry.last > settings.lifetime  # client, reply


def expires_at(entry, settings, kind=TRIPLET):
    """The first second at which expired(entry, ...) holds: a store that
    removes entries by itself (a TTL) may drop the entry from then on."""
    if kind == TRAP:
        return entry.last + settings.trap_time
    if kind == SPF:
        return entry.first + SPF_CACHE
    if kind == NAME:
        return entry.first + NAME_CACHE
    if kind in (CLIENT, REPLY):
        return entry.last + settings.lifetime + 1
    if not entry.passed:
        return entry.first + settings.retry_window + 1
    if kind == BOUNCE:
        return entry.passed + settings.bounce_lifetime + 1
    return entry.last + settings.lifetime + 1


def required_delay(entry, settings):
    """GL_DELAY, longer for a triplet whose refused attempts came too fast.

    Retries beyond GL_PUNISH_AFTER add GL_PUNISH_STEP each (at most
    GL_PUNISH_MAX), but only while the refused attempts so far came on
    average less than GL_PUNISH_GAP apart. Real MTAs retry at most a few
    times within the delay (Exchange: 1 and 2 minutes) and then wait; a
    burst of messages at once is forgiven as soon as its retries come at
    the sender's normal pace.
    """
    early = entry.tries - 1
    limit = getattr(settings, "punish_max", 0)
    if limit <= 0 or early <= settings.punish_after:
        return settings.delay
    if entry.last - entry.first >= settings.punish_gap * early:
        return settings.delay
    return settings.delay + min(limit, settings.punish_step * (early - settings.punish_after))


def decide(entry, now, settings, kind=TRIPLET):
    """The triplet alone -> (action, reason, new entry, waited seconds).

    The new entry is the very object passed in when nothing needs writing.
    """
    if entry is None or expired(entry, now, settings, kind):
        reason = "new" if entry is None else "expired"
        return GREYLIST, reason, Entry(now, now), 0
    waited = now - entry.first
    if entry.passed:
        if now - entry.last >= RENEW_AFTER:
            entry = Entry(entry.first, now, entry.passed, entry.tries)
        return PASS, "known", entry, entry.passed - entry.first
    required = required_delay(entry, settings)
    if waited < required:
        reason = "early" if required == settings.delay else "punished"
        return GREYLIST, reason, Entry(entry.first, now, 0, entry.tries + 1), waited
    return PASS, "delayed", Entry(entry.first, now, now, entry.tries), waited


def auto_whitelisted(client, now, settings):
    return client is not None and bool(client.passed) and not expired(client, now, settings, CLIENT)


def count_delivery(client, now, settings):
    """A delivery of this client passed greylisting: count it, one an hour."""
    needed = getattr(settings, "awl_count", 0)
    if needed <= 0:
        return client
    if client is None or expired(client, now, settings, CLIENT):
        return Entry(now, now, now if needed <= 1 else 0, 1)
    if now - client.last < RENEW_AFTER:
        return client
    tries = client.tries + 1
    return Entry(client.first, now, client.passed or (now if tries >= needed else 0), tries)


def renew(entry, now):
    """A passed entry seen again: its lifetime restarts (written once an hour)."""
    if now - entry.last < RENEW_AFTER:
        return entry
    return Entry(entry.first, now, entry.passed, entry.tries + 1)


def record_reply(entry, now, settings):
    """A local user wrote to a remote address: its replies will pass."""
    if entry is None or expired(entry, now, settings, REPLY):
        return Entry(now, now, now, 1)
    return renew(entry, now)


def decide_request(entries, now, settings, kind=TRIPLET, greytrap=False, trusted=False):
    """The whole decision for one RCPT.

    entries: [triplet, client, trap, reply] as stored, and optionally a
    fifth, legacy: the client entry of the client's network, read (never
    written) while GL_AWL_UNIT=address and entries written before it last
    (None: none, or the feature is off and the key was not looked up);
    kind: TRIPLET or BOUNCE; greytrap: the recipient is listed in
    GL_DIR/greytraps; trusted: the client is not suspicious
    (GL_GREYLIST=suspicious): a triplet the rules would refuse passes at
    once as 'trusted', recorded as passed and counted toward the
    auto-whitelist (greytraps, traps and the rest decide first).
    -> (action, reason, new entries, waited, note); a new entry that is the
    object given needs no write; note says what learning mode let through.
    """
    triplet, client, trap, reply = entries[:4]
    legacy = entries[4] if len(entries) > 4 else None
    new = list(entries)
    waited = 0
    awl = auto_whitelisted(client, now, settings)
    # A network's entry written before GL_AWL_UNIT=address passes its
    # addresses as before until it expires (it is not renewed); each of
    # their deliveries counts toward the address's own entry meanwhile.
    old_awl = not awl and auto_whitelisted(legacy, now, settings)
    trapped = trap is not None and not expired(trap, now, settings, TRAP)
    if greytrap and not (awl or old_awl) and settings.trap_time > 0:
        # An auto-whitelisted client is not trapped: one bad address in a
        # big provider's traffic must not stop all of its mail.
        if trapped:
            new[2] = Entry(trap.first, now, 0, trap.tries + 1)
        else:
            new[2] = Entry(now, now, 0, 1)
        action, reason = GREYLIST, "greytrap"
    elif greytrap:
        action, reason = GREYLIST, "greytrap"
    elif awl or old_awl:
        # Before the network's trap: a trap holds the network (bots come
        # in ranges), but an address that earned the auto-whitelist is not
        # held by a neighbour's hit.
        action, reason = PASS, "auto-whitelist"
        new[1] = renew(client, now) if awl else count_delivery(client, now, settings)
    elif trapped:
        action, reason, waited = GREYLIST, "trapped", now - trap.first
    elif reply is not None and not expired(reply, now, settings, REPLY):
        action, reason = PASS, "reply"
        new[3] = renew(reply, now)
    else:
        action, reason, new[0], waited = decide(triplet, now, settings, kind)
        if action == GREYLIST and trusted:
            first = now if reason in ("new", "expired") else triplet.first
            tries = 0 if reason in ("new", "expired") else triplet.tries
            action, reason, new[0] = PASS, "trusted", Entry(first, now, now, tries)
            waited = now - first
        if action == PASS:
            new[1] = count_delivery(client, now, settings)
    note = None
    if action == GREYLIST and getattr(settings, "learn", False):
        # Record as if the retry had come: the database is ready to use
        # when learning mode is switched off. Traps are not recorded.
        note = "would greylist: " + reason
        if triplet is None or expired(triplet, now, settings, kind):
            new[0] = Entry(now, now, now, 0)
        elif not triplet.passed:
            new[0] = Entry(triplet.first, now, now, triplet.tries)
        else:
            new[0] = triplet
        new[1] = count_delivery(client, now, settings)
        new[2] = trap
        action, reason, waited = PASS, "learning", 0
    return action, reason, new, waited, note
