"""SPF (qgrey.spf): the openspf RFC 7208 test suite, whole, with its zone
data fed to check_host through a resolver over that data; then a few
records of our own.

The suite (rfc7208-tests.yml, in pyspf's source distribution) is fetched
with pip at test time into a cache shared between runs ($XDG_CACHE_HOME or
~/.cache, qgrey-tests/), never kept in the repository.
"""
import os
import subprocess
import sys
import tarfile
import tempfile

import pytest

from conftest import unavailable
from qgrey import dns, spf

PYSPF = "pyspf==2.0.14"
SUITE_NAME = "rfc7208-tests.yml"


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "qgrey-tests")


def fetch_suite():
    """-> path of the suite, or raises RuntimeError saying why not."""
    path = os.path.join(cache_dir(), SUITE_NAME)
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--no-binary", ":all:", PYSPF, "-d", tmp],
                              capture_output=True, text=True, timeout=300)
        archives = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
        if proc.returncode or not archives:
            raise RuntimeError("pip download %s failed: %s" % (PYSPF, proc.stderr[-300:]))
        with tarfile.open(os.path.join(tmp, archives[0])) as tar:
            member = [m for m in tar.getmembers() if m.name.endswith("/test/" + SUITE_NAME)][0]
            data = tar.extractfile(member).read()
    with open(path + ".tmp", "wb") as out:
        out.write(data)
    os.replace(path + ".tmp", path)
    return path


def load_suite():
    """-> [(id, scenario zone, test)] or [(None, why, None)]."""
    try:
        import yaml
    except ImportError:
        return [(None, "pyyaml is not installed (pip install '.[test]')", None)]
    try:
        path = fetch_suite()
    except (RuntimeError, OSError, subprocess.SubprocessError, IndexError) as err:
        return [(None, "cannot obtain the RFC 7208 suite: %s" % err, None)]
    cases = []
    with open(path, "rb") as f:
        for number, scenario in enumerate(yaml.safe_load_all(f)):
            zone = ZoneResolver(scenario["zonedata"])
            name = scenario["description"].replace(" ", "-").lower()
            for test_id, test in scenario["tests"].items():
                cases.append(("%s/%s" % (name, test_id), zone, test))
    return cases


class ZoneResolver:
    """The suite's zone data as a resolver, read as the suite's own driver
    (pyspf's testspf.py) reads it: a name absent is NXDOMAIN (a name under
    error. times out), TIMEOUT makes the name (or one of its types) time
    out, SPF records stand in for TXT where a name has no TXT, NONE is no
    record, a label longer than 63 bytes times out."""

    def __init__(self, zonedata):
        self.zone = {}
        self.queries = 0
        for name, entries in zonedata.items():
            rows, spf_rows, has_txt = [], [], False
            for entry in entries:
                if entry == "TIMEOUT":
                    rows.append("TIMEOUT")
                    continue
                for rtype, value in entry.items():
                    if rtype in ("TXT", "SPF") and isinstance(value, str):
                        value = [value]
                    if rtype == "TXT":
                        has_txt = True
                    elif rtype == "SPF":
                        spf_rows.append(("TXT", value))
                    if value != ["NONE"]:
                        rows.append((rtype, value))
            if not has_txt:
                rows.extend(spf_rows)
            self.zone[name.lower().rstrip(".")] = rows

    def query(self, name, qtype, depth=0):
        self.queries += 1
        labels = [label for label in name.split(".") if label]
        if any(len(label) > 63 for label in labels):
            return dns.TIMEOUT, "label"
        name = ".".join(labels).lower()
        if name not in self.zone:
            return (dns.TIMEOUT, "error.") if name.startswith("error.") else (dns.NXDOMAIN, [])
        records, seen_type = [], False
        for row in self.zone[name]:
            if row == "TIMEOUT":
                if not seen_type:
                    return dns.TIMEOUT, "zone"
                break
            rtype, value = row
            if rtype == qtype:
                seen_type = True
                if value == "TIMEOUT":
                    return dns.TIMEOUT, "zone"
            elif value == "TIMEOUT":
                continue
            if rtype == qtype:
                records.append(self.value(rtype, value))
            elif rtype == "CNAME" and depth < 8:
                status, more = self.query(value, qtype, depth + 1)
                if status in (dns.TIMEOUT, dns.ERROR):
                    return status, more
                records.extend(more)
        return (dns.OK, records) if records else (dns.NODATA, [])

    @staticmethod
    def value(rtype, value):
        if rtype == "TXT":
            return "".join(value).encode("utf-8").decode("latin-1")
        if rtype == "MX":
            return (value[0], value[1].lower().rstrip("."))
        if rtype == "PTR":
            return value.lower().rstrip(".")
        return value


SUITE = load_suite()


@pytest.mark.parametrize("case_id,zone,test", SUITE, ids=[c[0] or "suite" for c in SUITE])
def test_rfc7208_suite(case_id, zone, test):
    if case_id is None:
        unavailable(zone)
    result = spf.check_host(test["host"], None, test.get("mailfrom", ""),
                            test.get("helo", ""), zone)
    allowed = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert result.result in allowed, (result, test.get("description"))
    if "explanation" in test:
        expected = test["explanation"]
        assert (result.explanation or "DEFAULT") == expected, result


def test_suite_is_whole():
    if SUITE[0][0] is None:
        unavailable(SUITE[0][1])
    # pyspf 2.0.14 carries the 2014.05 release: 16 scenarios, 203 tests
    assert len(SUITE) == 203
