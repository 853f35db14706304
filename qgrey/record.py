"""The record of every key: one greylisting cycle of a triplet, or the
same four fields reused by the rules' other keys (see policy.py). Shared by
the rules and the stores; it knows neither."""


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
