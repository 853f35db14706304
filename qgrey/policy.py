"""The decision: (stored entry, now, settings) -> (action, reason, new entry, waited).

Pure: no environment, files or clock. qgrey-expire and the reports use the
same predicates (waiting_over, lifetime_over, expired).

An entry records one greylisting cycle of a triplet:
  first   when the triplet was first seen in this cycle (the delay runs from here)
  last    when it was last seen (refused attempt, or accepted delivery)
  passed  when its retry was accepted (0 while it is still waiting)
  tries   how many attempts were refused in this cycle
"""

GREYLIST = "greylist"  # 451 now, come back later
PASS = "pass"          # accept (add a header)
SKIP = "skip"          # not ours to greylist: no answer at all

# An accepted delivery renews a passed entry's lifetime; writing that at most
# once an hour keeps the database write off the path of known senders.
RENEW_AFTER = 3600


class Entry:
    __slots__ = ("first", "last", "passed", "tries")

    def __init__(self, first, last, passed=0, tries=1):
        self.first, self.last, self.passed, self.tries = first, last, passed, tries

    def fields(self):
        return (self.first, self.last, self.passed, self.tries)

    def __eq__(self, other):
        return isinstance(other, Entry) and self.fields() == other.fields()

    def __repr__(self):
        return "Entry(%d, %d, %d, %d)" % self.fields()


def waiting_over(entry, now, settings):
    """A waiting entry whose retry window has run out without a retry."""
    return not entry.passed and now - entry.first > settings.retry_window


def lifetime_over(entry, now, settings):
    """A passed entry not seen for longer than its lifetime."""
    return bool(entry.passed) and now - entry.last > settings.lifetime


def expired(entry, now, settings):
    return waiting_over(entry, now, settings) or lifetime_over(entry, now, settings)


def decide(entry, now, settings):
    """-> (action, reason, new entry, waited seconds).

    The new entry is the very object passed in when nothing needs writing.
    """
    if entry is None or expired(entry, now, settings):
        reason = "new" if entry is None else "expired"
        return GREYLIST, reason, Entry(now, now), 0
    waited = now - entry.first
    if entry.passed:
        if now - entry.last >= RENEW_AFTER:
            entry = Entry(entry.first, now, entry.passed, entry.tries)
        return PASS, "known", entry, entry.passed - entry.first
    if waited < settings.delay:
        return GREYLIST, "early", Entry(entry.first, now, 0, entry.tries + 1), waited
    return PASS, "delayed", Entry(entry.first, now, now, entry.tries), waited
