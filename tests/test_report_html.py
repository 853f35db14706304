"""qgrey-report --html: the page says what the text report says, escapes
the log, stays small, and renders in a real browser.

    python3 tests/test_report_html.py docs/report.png

writes the README's screenshot from the same generated log.
"""
import html.parser
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import pytest

from qgrey import htmlreport, report, settings as settings_module

BIN = os.path.dirname(sys.executable)
START = 1763251200  # 2025-11-16 00:00 UTC


def command(*args, gl_dir, env=None, stdin=None):
    environment = {"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}
    environment.update(env or {})
    return subprocess.run([os.path.join(BIN, "qgrey-report")] + list(args), env=environment,
                          input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120, text=True)


def traffic(days=3, per_hour=120, learning_days=1, seed=7):
    """A few days of a small server's log, learning mode (GL_LEARN=1) first:
    -> (lines, truth). Bots never retry; real senders retry after minutes
    to hours, some from another address of their /24; a few networks send
    much. Every greylisted triplet has a sender of its own."""
    rnd = random.Random(seed)
    events, truth = [], {"back": 0, "never": 0}
    end = START + days * 86400
    bot_nets = ["203.0.113", "198.51.100", "192.0.2"] + [
        "%d.%d.%d" % (rnd.randrange(1, 224), rnd.randrange(256), rnd.randrange(256)) for _ in range(40)]
    serial = [0]

    def line(at, action, reason, client, sender, recipient, waited=0, detail=None):
        text = "qgrey: action=%s reason=%s client=%s sender=%s recipient=%s waited=%d" % (
            action, reason, client, sender, recipient, waited)
        events.append((at, text + (" detail=" + detail if detail else "")))

    def fresh(kind):  # letters only: GL_NORMALISE_SENDER turns digit runs into '#'
        serial[0] += 1
        name, left = "", serial[0]
        while left:
            left, digit = divmod(left, 26)
            name += chr(97 + digit)
        return "%s.%s@%s.example.org" % (kind, name, rnd.choice(("mail", "lists", "shop", "news")))

    for hour in range(days * 24):
        base = START + hour * 3600
        learn = hour < learning_days * 24
        busy = 0.55 + 0.45 * abs(12 - (hour % 24 + 10) % 24) / 12.0  # a daily swing
        for _ in range(int(per_hour * busy * rnd.uniform(0.8, 1.2))):
            at = base + rnd.randrange(3600)
            rcpt = "user%d@example.net" % rnd.randrange(40)
            kind = rnd.random()
            if kind < 0.5:  # a bot: never retries, at most an early retry
                net = rnd.choice(bot_nets[:3]) if rnd.random() < 0.3 else rnd.choice(bot_nets)
                client, sender = "%s.%d" % (net, rnd.randrange(1, 255)), fresh("b")
                if learn:
                    why = "greytrap" if rnd.random() < 0.05 else "new"
                    line(at, "pass", "learning", client, sender, rcpt, detail="would greylist: " + why)
                    continue
                line(at, "greylist", "new", client, sender, rcpt)
                line(at, "message", "greylisted", client, sender, rcpt)
                if rnd.random() < 0.2:
                    line(at + rnd.randrange(10, 200), "greylist", "early", client, sender, rcpt,
                         waited=rnd.randrange(10, 200))
                truth["never"] += 1
            elif kind < 0.75:  # a real sender, new triplet
                net = "%d.%d.%d" % (rnd.randrange(1, 224), rnd.randrange(256), rnd.randrange(256))
                client, sender = "%s.%d" % (net, rnd.randrange(1, 255)), fresh("s")
                if learn:
                    line(at, "pass", "learning", client, sender, rcpt, detail="would greylist: new")
                    continue
                line(at, "greylist", "new", client, sender, rcpt)
                wait = min(int(rnd.lognormvariate(7.0, 0.9)) + 300, 3 * 86400)
                if at + wait >= end:
                    truth["never"] += 1
                    continue
                retry = client if rnd.random() < 0.6 else "%s.%d" % (net, rnd.randrange(1, 255))
                line(at + wait, "pass", "delayed", retry, sender, rcpt, waited=wait)
                line(at + wait, "message", "passed", retry, sender, rcpt, waited=wait)
                truth["back"] += 1
            elif kind < 0.9:
                line(at, "pass", "known", "198.18.%d.%d" % (rnd.randrange(256), rnd.randrange(1, 255)),
                     fresh("k"), rcpt, waited=rnd.randrange(86400 * 30))
            elif kind < 0.95:
                line(at, "pass", rnd.choice(("auto-whitelist", "reply")),
                     "198.18.7.%d" % rnd.randrange(1, 255), fresh("a"), rcpt)
            elif kind < 0.998:
                line(at, "skip", rnd.choice(("relayclient", "relayclient", "authenticated", "whitelisted")),
                     "10.0.0.%d" % rnd.randrange(1, 255), "staff@example.net", "x@example.com")
            else:
                line(at, "error", "lock-timeout", "192.0.2.77", "<>", rcpt,
                     detail="no lock on /var/qgrey/lock within the deadline; answered accept")
            if rnd.random() < 0.3:
                events.append((at, "tcpserver: end %d status 0" % at))
    events.sort(key=lambda e: e[0])
    lines = ["@%016x%08x %s\n" % ((1 << 62) + 10 + at, rnd.randrange(10 ** 9), text)
             for at, text in events if at < end]
    return lines, truth


class Page(html.parser.HTMLParser):
    """The numbers of the page: its tables (by id, rows of cell text), the
    spans with an id, the titles of the charts' bars."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.spans, self.titles, self.tags = {}, {}, [], set()
        self._table = self._span = self._cell = self._title = self._svg = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "span" and "id" in attrs:
            self._span, self._cell = attrs["id"], []
        elif tag == "title" and self._svg:
            self._title = []
        if tag == "svg":
            self._svg = True

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "span" and self._span:
            self.spans[self._span] = "".join(self._cell)
            self._span = self._cell = None
        elif tag == "title" and self._title is not None:
            self.titles.append("".join(self._title))
            self._title = None
        elif tag == "svg":
            self._svg = False

    def handle_data(self, data):
        for part in (self._cell, self._title):
            if part is not None:
                part.append(data)

    def rows(self, name):
        return [row for row in self.tables.get(name, [])[1:]]


def n(text):
    return int(text.replace(",", ""))


def text_sections(text):
    """The text report -> {title line: [lines under it]}."""
    sections = {}
    for block in text.split("\n\n"):
        head, *rest = block.splitlines()
        sections[head] = rest
    return sections


def render(tmp_path, gl_dir, lines, *args, env=None):
    log = tmp_path / "current"
    log.write_text("".join(lines))
    page = tmp_path / "report.html"
    result = command("--list", "--html", str(page), *args, str(log), gl_dir=gl_dir, env=env)
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout, page.read_text()


def test_the_page_has_the_text_reports_numbers(tmp_path, gl_dir):
    lines, truth = traffic()
    text, page = render(tmp_path, gl_dir, lines)
    # --html leaves the text report as it is
    assert text == command("--list", str(tmp_path / "current"), gl_dir=gl_dir).stdout
    parsed, sections = Page(page), text_sections(text)
    head = next(h for h in sections if h.startswith("qgrey report: "))
    assert n(parsed.spans["decisions-total"]) == int(head.split()[2])
    assert head.split(", ", 1)[1] in page  # the span of the log

    decisions = [line.split() for line in sections["decisions"]]
    assert [[a, r, str(n(c))] for a, r, c, _ in parsed.rows("decisions")] == decisions
    # The charts: every stamped decision in one bar of its action and reason.
    charted = {}
    for title in parsed.titles:
        action, reason, count = re.match(r"(\S+) (\S+): (\d+), ", title).groups()
        charted[(action, reason)] = charted.get((action, reason), 0) + int(count)
    assert charted == {(a, r): int(c) for a, r, c in decisions}

    pending_head = next(h for h in sections if h.startswith("triplets greylisted that never came back"))
    listed = sections[pending_head]
    assert n(parsed.spans["pending"]) == int(pending_head.split(": ")[1]) == len(listed) == truth["never"]
    shown = parsed.rows("pending-list")
    assert len(shown) == htmlreport.LIST < len(listed)
    assert [key for key, _ in shown] == [line.strip() for line in listed[:htmlreport.LIST]]
    assert "of %s greylisted triplets" % "{:,}".format(truth["never"] + truth["back"]) in page

    delay_head = next(h for h in sections if h.startswith("delay of mail that passed"))
    passed, mean = re.match(r".*: (\d+) messages, mean (\S+)", delay_head).groups()
    assert (n(parsed.spans["passed"]), parsed.spans["mean"]) == (int(passed), mean)
    assert int(passed) == truth["back"]
    histogram = [line.split()[:-1] if line.endswith("#") else line.split() for line in sections[delay_head]]
    assert [[label, str(n(count))] for label, count, _, _ in parsed.rows("delays")] == \
        [[" ".join(row[:-1]), row[-1]] for row in histogram]

    clients = [line.split() for line in sections["clients greylisted most"]]
    assert [[str(n(count)), client] for client, count, _ in parsed.rows("clients")] == clients

    learning_head = next(h for h in sections if h.startswith("learning mode: would have greylisted"))
    assert n(parsed.spans["learning-total"]) == int(learning_head.split()[-1])
    assert [[reason, str(n(count))] for reason, count, _, _ in parsed.rows("learning")] == \
        [line.split() for line in sections[learning_head]]
    assert {r for r, _ in (line.split() for line in sections[learning_head])} == {"new", "greytrap"}

    # Networks: every client of traffic() is a dotted quad, its /24 (the
    # default GL_IPV4_PREFIX) its first three parts; counted here afresh.
    networks = {}
    for line in lines:
        if "action=greylist " in line:
            client = re.search(r" client=(\d+\.\d+\.\d+)\.\d+ ", line).group(1)
            networks[client + ".0/24"] = networks.get(client + ".0/24", 0) + 1
    top = sorted(networks.items(), key=lambda i: (-i[1], i[0]))[:report.TOP]
    assert [(net, n(count)) for net, count, _ in parsed.rows("networks")] == top
    # Seed 7: one network leads, the busiest of the three that bots favour.
    assert top[0][0] == "198.51.100.0/24" and top[0][1] > top[1][1], top[:3]


def test_exact_clients_are_their_own_networks(tmp_path, gl_dir):
    lines, _ = traffic(days=1, learning_days=0)
    text, page = render(tmp_path, gl_dir, lines, env={"GL_MASK_IP": "0"})
    networks = [row[:2] for row in Page(page).rows("networks")]
    assert networks == [row[:2] for row in Page(page).rows("clients")]


PLAIN = """\
qgrey: action=greylist reason=new client=198.51.100.7 sender=alice@example.org recipient=bob@example.net waited=0
qgrey: action=pass reason=delayed client=198.51.100.9 sender=alice@example.org recipient=bob@example.net waited=400
qgrey: action=pass reason=learning client=192.0.2.5 sender=<> recipient=c@example.net waited=0 detail=would greylist: new; the message is decided at DATA
"""


def test_plain_lines_say_the_chart_needs_stamps(tmp_path, gl_dir):
    text, page = render(tmp_path, gl_dir, [PLAIN])
    parsed = Page(page)
    assert "This chart needs TAI64N stamps" in page and not parsed.titles
    assert n(parsed.spans["decisions-total"]) == 3 and n(parsed.spans["pending"]) == 0
    assert text.endswith("\nlearning mode: would have greylisted 1\n  new                    1\n")
    assert parsed.rows("learning")[0][:2] == ["new", "1"]
    stamped, _ = traffic(days=1, per_hour=10, learning_days=0)
    _, mixed = render(tmp_path, gl_dir, stamped + [PLAIN])
    assert re.search(r'id="unstamped">3<', mixed)


HOSTILE = [
    '@400000006919f3c000000000 qgrey: action=greylist reason=new client=<script>alert(1)</script> '
    'sender=<a>@x recipient=b@x waited=0\n',
    '@400000006919f3c100000000 qgrey: action=greylist reason=new client=<svg/onload=x>"&<b> '
    'sender="q"@x recipient=<b>@x waited=0\n',
    # not a decision the plugin writes (action and reason are words): skipped, counted
    '@400000006919f3c100000000 qgrey: action=<script>alert(1)</script> reason=<i>new</i> '
    'client=<img/src=x> sender=<a>@x recipient=b@x waited=0\n',
    '@400000006919f3c200000000 qgrey: action=pass reason=learning client=1.2.3.4 sender=a@x recipient=b@x '
    'waited=0 detail=would greylist: <u>x</u>&"\'\n',
]


def test_every_value_from_the_log_is_escaped(tmp_path, gl_dir):
    _, page = render(tmp_path, gl_dir, HOSTILE)
    parsed = Page(page)
    assert parsed.tags <= {"html", "head", "meta", "title", "style", "body", "main", "svg", "defs",
                           "pattern", "rect", "circle", "h1", "h2", "h3", "p", "span", "section",
                           "table", "tr", "th", "td", "code", "figure", "line", "text", "ul", "li"}
    for raw in ("<script", "<img", "<svg/", "<i>", "<u>", "<b>", '"&<'):
        assert raw not in page
    for escaped in ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;svg/onload=x&gt;", "&quot;&amp;&lt;b&gt;"):
        assert escaped in page
    assert ["<u>x</u>&\"'", "1"] == parsed.rows("learning")[0][:2]
    assert 'Skipped <span id="malformed">1</span> qgrey lines' in page


def test_self_contained_and_bounded(tmp_path, gl_dir):
    lines, _ = traffic(days=2, per_hour=40)
    _, page = render(tmp_path, gl_dir, lines)
    assert "://" not in page and "<script" not in page and "src=" not in page and "href" not in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media print" in page and "max-width" in page
    charts = re.findall(r'<svg class="chart"[^>]*>', page)
    assert len(charts) >= 5 and all(' viewBox="0 0 ' in svg for svg in charts)
    assert "svg.chart{display:block;width:100%;height:auto}" in page
    # Stamps over a century: the buckets coarsen, the chart keeps its bars few.
    settings = settings_module.load({b"GL_DIR": gl_dir.encode()})
    long = report.Report(settings, networks=True)
    rnd = random.Random(1)
    for i in range(20000):
        at = START + rnd.randrange(100 * 365 * 86400)
        long.add("@%016x00000000 qgrey: action=greylist reason=new client=192.0.2.%d sender=s%d@x "
                 "recipient=r@x waited=0\n" % ((1 << 62) + 10 + at, i % 250, i))
    assert len(long.buckets) <= report.MAX_BUCKETS and long.width > 3600
    out = tmp_path / "long.html"
    with open(out, "w") as f:
        htmlreport.write(long, f)
    titles = Page(out.read_text()).titles
    assert 0 < len(titles) <= htmlreport.BARS
    assert sum(int(t.split(": ")[1].split(",")[0]) for t in titles) == 20000
    assert len(Page(out.read_text()).rows("pending-list")) == htmlreport.LIST


def test_cannot_write_the_page(tmp_path, gl_dir):
    result = command("--html", str(tmp_path / "no" / "page.html"), gl_dir=gl_dir, stdin=PLAIN)
    assert result.returncode == 111
    page = tmp_path / "no" / "page.html"
    assert result.stderr.startswith("qgrey-report: fatal: cannot write %s: " % page)
    for usage in (["--html"], ["--html", "-"], ["--html", "--list"]):
        assert command(*usage, gl_dir=gl_dir, stdin=PLAIN).returncode == 100
    assert os.listdir(tmp_path) == ["state"]


# In a browser

def browser():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing, and CI=true: .ci/run must install it")
    pytest.skip("no chromium (Debian: apt-get install chromium)")


def screenshot(chromium, page, png, width, height):
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--force-device-scale-factor=1", "--user-data-dir=" + profile,
             "--screenshot=" + png, "--window-size=%d,%d" % (width, height), "file://" + page],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, text=True)
    assert os.path.exists(png), result.stdout


def png_pixels(path):
    """A PNG (8 bits, RGB or RGBA, not interlaced) -> (width, height, rows of bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, [], None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[at + 8:at + 21])
        elif kind == b"IDAT":
            idat.append(data[at + 8:at + 8 + length])
        at += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    size = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(b"".join(idat)), width * size, []
    prior = bytearray(stride)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride) if kind else ():
            left = row[i - size] if i >= size else 0
            up, corner = prior[i], prior[i - size] if i >= size else 0
            if kind == 1:
                row[i] = (row[i] + left) & 255
            elif kind == 2:
                row[i] = (row[i] + up) & 255
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 255
            else:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(row))
        prior = row
    return width, height, size, rows


@pytest.mark.parametrize("width, height", [(390, 844), (800, 1200)])  # a phone, a desktop
def test_the_page_renders_in_a_browser(tmp_path, gl_dir, width, height):
    chromium = browser()
    lines, _ = traffic(days=2, per_hour=40)
    render(tmp_path, gl_dir, lines)
    png = str(tmp_path / "shot.png")
    screenshot(chromium, str(tmp_path / "report.html"), png, width, height)
    w, h, size, rows = png_pixels(png)
    assert (w, h) == (width, height)
    pixels = [row[x:x + 3] for row in rows[::4] for x in range(0, len(row), size * 4)]
    white = sum(p == b"\xff\xff\xff" for p in pixels)
    dark = sum(max(p) < 90 for p in pixels)
    assert len(set(pixels)) > 20  # not blank: text, rules, patterns
    assert 0.005 * len(pixels) < dark and white > 0.3 * len(pixels)
    # Nothing wider than a phone: the right-hand column of pixels is page background.
    assert {row[(w - 1) * size:(w - 1) * size + 3] for row in rows} == {b"\xff\xff\xff"}


def main(png):
    """The README's screenshot: 800 px wide, the top of the page, in 256 colours."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as work:
        lines, _ = traffic()
        log, page = os.path.join(work, "current"), os.path.join(work, "report.html")
        with open(log, "w") as f:
            f.writelines(lines)
        with open(os.devnull, "w") as devnull:
            assert report.run(["--html", page, log], {b"GL_DIR": work.encode()}, devnull) == 0
        screenshot(chromium, page, png, 800, 1500)
    width, height, size, rows = png_pixels(png)
    pixels = [[row[x:x + 3] for x in range(0, len(row), size)] for row in rows]
    counts = {}
    for row in pixels:
        for p in row:
            counts[p] = counts.get(p, 0) + 1
    palette = sorted(counts, key=counts.get, reverse=True)[:256]
    index = {p: i for i, p in enumerate(palette)}
    for p in counts:
        if p not in index:  # the nearest colour of the palette
            index[p] = min(range(len(palette)),
                           key=lambda i: sum((a - b) ** 2 for a, b in zip(p, palette[i])))
    raw = b"".join(b"\0" + bytes(index[p] for p in row) for row in pixels)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(png, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
                + chunk(b"PLTE", b"".join(palette)) + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))
    print("%s: %dx%d, %d bytes" % (png, width, height, os.path.getsize(png)))


if __name__ == "__main__":
    main(sys.argv[1])
