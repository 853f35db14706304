"""qgrey-report per GL_GREYLIST mode: trusted, greylisted, passed after a
delay, the delay new mail accepted saw (median, longest), and under trial
how many greylisted clients suspicious would have trusted. A written-out
log through the installed command; the numbers below were counted by hand
from it."""
import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)

LOG = """\
qgrey: action=greylist reason=new client=192.0.2.1 sender=a@x.org recipient=b@y.net waited=0
qgrey: action=pass reason=delayed client=192.0.2.1 sender=a@x.org recipient=b@y.net waited=900
qgrey: action=greylist reason=new client=192.0.2.2 mode=suspicious sender=c@x.org recipient=b@y.net \
waited=0
qgrey: action=pass reason=delayed client=192.0.2.2 mode=suspicious sender=c@x.org recipient=b@y.net \
waited=1320
qgrey: action=pass reason=known client=192.0.2.1 sender=a@x.org recipient=b@y.net waited=900
qgrey: action=greylist reason=new client=198.51.100.10 name=mail.example.com mode=trial trial=trusted \
sender=d@e.org recipient=b@y.net waited=0
qgrey: action=greylist reason=new client=203.0.113.5 mode=trial trial=suspicious sender=f@g.org \
recipient=b@y.net waited=0
qgrey: action=greylist reason=new client=198.51.100.11 name=mx.example.org mode=trial trial=trusted \
sender=h@e.org recipient=b@y.net waited=0
qgrey: action=pass reason=trusted client=198.51.100.20 name=mail.example.com mode=suspicious \
sender=i@e.org recipient=b@y.net waited=0
qgrey: action=pass reason=trusted client=198.51.100.21 name=x.pool.example helo=mx.example.org \
mode=suspicious sender=j@e.org recipient=b@y.net waited=0
qgrey: action=pass reason=delayed client=198.51.100.10 mode=trial sender=d@e.org recipient=b@y.net \
waited=600
qgrey: action=skip reason=whitelisted client=192.0.2.9 sender=k@e.org recipient=b@y.net
"""

HEAD = """\
qgrey report: 12 decisions

decisions
  greylist  new                    5
  pass      delayed                3
  pass      trusted                2
  pass      known                  1
  skip      whitelisted            1

triplets greylisted that never came back: 2

delay of mail that passed after greylisting: 3 messages, mean 15m40s
  < 5m           0 
  5-10m          0 
  10-15m         1 ####################
  15-30m         2 ########################################
  30m-1h         0 
  1-2h           0 
  2-4h           0 
  4-12h          0 
  12-24h         0 
  >= 1d          0 

clients greylisted most
          1 192.0.2.1
          1 192.0.2.2
          1 198.51.100.10
          1 198.51.100.11
          1 203.0.113.5
"""

# Counted by hand from LOG: per mode, passes and greylistings only (the
# skip is not counted); all: lines 1, 2, 5 (one delay, 900 s); trial:
# 6, 7, 8, 11 (one delay, 600 s); suspicious: 3, 4, 9, 10 (delays 0, 0,
# 1320 s: median 0). Line 3, a greylisting under suspicious, says so only
# by its mode=.
MODES = """
by mode (GL_GREYLIST, as each line says: mode=; none: all)
  mode       decisions  trusted greylisted  delayed   median  longest
  all                3        0          1        1   15m00s   15m00s
  trial              4        0          3        1   10m00s   10m00s
  suspicious         4        2          1        1    0m00s   22m00s
trial: of 3 greylistings, suspicious would have trusted 2 and greylisted 1
"""


def report(tmp_path, *args, **env):
    log = tmp_path / "current"
    log.write_text(LOG)
    environment = {"PATH": "/usr/bin:/bin", "GL_DIR": str(tmp_path / "state")}
    environment.update(env)
    result = subprocess.run([os.path.join(BIN, "qgrey-report")] + list(args) + [str(log)],
                            env=environment, capture_output=True, stdin=subprocess.DEVNULL,
                            cwd="/")
    assert (result.returncode, result.stderr) == (0, b"")
    return result.stdout.decode()


def test_each_line_counts_under_the_mode_it_names(tmp_path):
    assert report(tmp_path) == HEAD + MODES


def test_the_reports_own_setting_changes_nothing(tmp_path):
    assert report(tmp_path, GL_GREYLIST="suspicious") == HEAD + MODES
    assert report(tmp_path, GL_GREYLIST="trial") == HEAD + MODES


def test_lines_written_before_mode_was_logged(tmp_path):
    """Without mode=, trial= places a line under trial and reason=trusted
    under suspicious; anything else is all."""
    lines = ["qgrey: action=greylist reason=new client=192.0.2.%d trial=suspicious sender=a@x.org "
             "recipient=b@y.net waited=0" % i for i in (1, 2)] + [
        "qgrey: action=pass reason=trusted client=192.0.2.3 name=a.example sender=a@x.org "
        "recipient=b@y.net waited=0",
        "qgrey: action=greylist reason=new client=192.0.2.4 sender=a@x.org recipient=b@y.net "
        "waited=0"]
    path = tmp_path / "old"
    path.write_text("".join(line + "\n" for line in lines))
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state")}, capture_output=True, cwd="/")
    assert result.stdout.decode().endswith(
        "  all                1        0          1        0        -        -\n"
        "  trial              2        0          2        0        -        -\n"
        "  suspicious         1        1          0        0    0m00s    0m00s\n"
        "trial: of 2 greylistings, suspicious would have trusted 0 and greylisted 2\n")


def test_no_section_when_every_decision_was_under_all(tmp_path):
    log = "".join(LOG.splitlines()[i] + "\n" for i in (0, 1, 4))
    path = tmp_path / "all"
    path.write_text(log)
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state")}, capture_output=True, cwd="/")
    assert result.returncode == 0
    assert "by mode" not in result.stdout.decode()
    assert result.stdout.decode().endswith("clients greylisted most\n          1 192.0.2.1\n")


def test_the_page(tmp_path):
    page = tmp_path / "report.html"
    report(tmp_path, "--html", str(page), GL_GREYLIST="suspicious")
    html = page.read_text()
    start = html.index("<section>\n<h2>Greylisting modes</h2>")
    assert html[start:html.index("</section>", start) + 11] == (
        "<section>\n<h2>Greylisting modes</h2>\n<p>Passes and greylistings by the mode they "
        "were taken under (GL_GREYLIST), as each line says: <code>mode=suspicious</code>, "
        "<code>mode=trial</code>; a line without <code>mode=</code> under all. The delay is that "
        "of new mail accepted: at once when trusted, after the wait when delayed.</p>\n"
        "<table id=\"modes\">\n<tr><th>mode</th><th class=\"n\">decisions</th>"
        "<th class=\"n\">trusted</th><th class=\"n\">greylisted</th>"
        "<th class=\"n\">passed after a delay</th><th class=\"n\">median delay</th>"
        "<th class=\"n\">longest delay</th></tr>\n"
        "<tr><td>all</td><td class=\"n\">3</td><td class=\"n\">0</td><td class=\"n\">1</td>"
        "<td class=\"n\">1</td><td class=\"n\">15m00s</td><td class=\"n\">15m00s</td></tr>\n"
        "<tr><td>trial</td><td class=\"n\">4</td><td class=\"n\">0</td><td class=\"n\">3</td>"
        "<td class=\"n\">1</td><td class=\"n\">10m00s</td><td class=\"n\">10m00s</td></tr>\n"
        "<tr><td>suspicious</td><td class=\"n\">4</td><td class=\"n\">2</td><td class=\"n\">1</td>"
        "<td class=\"n\">1</td><td class=\"n\">0m00s</td><td class=\"n\">22m00s</td></tr>\n"
        "</table>\n<p id=\"trial\">Trial: of 3 greylistings, suspicious would have trusted "
        "<span id=\"trial-trusted\">2</span> (66.7%) and greylisted 1.</p>\n</section>\n")


def test_median_of_an_even_count_is_the_lower_middle(tmp_path):
    """Delays 0, 300, 600, 900 (one trusted, three delayed): median 5m00s."""
    lines = ["qgrey: action=pass reason=trusted client=192.0.2.9 name=a.example mode=suspicious "
             "sender=a@x.org recipient=b@y.net waited=0"] + [
        "qgrey: action=pass reason=delayed client=192.0.2.%d mode=suspicious sender=a@x.org "
        "recipient=b@y.net waited=%d" % (i, w) for i, w in ((1, 900), (2, 300), (3, 600))]
    path = tmp_path / "even"
    path.write_text("".join(line + "\n" for line in lines))
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state"), "GL_GREYLIST": "suspicious"},
                            capture_output=True, cwd="/")
    assert result.stdout.decode().endswith(
        "  suspicious         4        1          0        3    5m00s   15m00s\n")


def test_the_plugins_own_lines(tmp_path, run):
    """The plugin's log under trial and suspicious, read back without the
    report's own GL_GREYLIST: the field spellings the report counts are the
    plugin's, and its marks alone place each line."""
    lines = []
    for mode, ip, host in (("trial", "198.51.100.10", "mail.example.com"),
                           ("trial", "203.0.113.5", "dsl-203-0-113-5.dyn.example.net"),
                           ("suspicious", "192.0.2.20", "mx.example.org"),
                           ("suspicious", "233.252.0.6", None)):
        result = run(GL_GREYLIST=mode, GL_HOST_NAMES="tcpserver", TCPREMOTEIP=ip,
                     TCPREMOTEHOST=host, SMTPHELOHOST="[%s]" % ip)
        lines.append(result.stderr.decode())
    assert [line.split(" ")[1:3] for line in lines] == [
        ["action=greylist", "reason=new"], ["action=greylist", "reason=new"],
        ["action=pass", "reason=trusted"], ["action=greylist", "reason=new"]]
    # each line names its mode; the suspicious greylisting by mode= alone
    assert [" mode=%s " % mode in line for line, mode in zip(lines, ("trial",) * 2 + ("suspicious",) * 2)] \
        == [True] * 4
    assert "trial=" not in lines[3] and "reason=trusted" not in lines[3]
    path = tmp_path / "plugin"
    path.write_text("".join(lines))
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state")}, capture_output=True, cwd="/")
    assert result.stdout.decode().endswith(
        "  trial              2        0          2        0        -        -\n"
        "  suspicious         2        1          1        0    0m00s    0m00s\n"
        "trial: of 2 greylistings, suspicious would have trusted 1 and greylisted 1\n")
