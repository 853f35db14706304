"""The README's quick start, run as written."""
import os
import re
import subprocess
import sys



README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


TOP = os.path.dirname(README)


def quick_start_lines():
    text = open(README).read()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    assert lines[0] == "python3 -m qgrey.install" and lines[1].startswith("mkdir -m 700 /tmp/qgrey-demo")
    return lines


def test_quick_start_shows_one_real_decision(tmp_path):
    """The README's commands, as written, with a scratch prefix for the install."""
    install, _, command = quick_start_lines()
    prefix, bindir, state = tmp_path / "opt", tmp_path / "bin", tmp_path / "demo"
    state.mkdir(mode=0o700)
    env = {"PATH": "%s:/usr/bin:/bin" % bindir}
    done = subprocess.run(install.replace("python3", sys.executable, 1) + " --prefix %s --bin %s" % (
        prefix, bindir), shell=True, env=env, capture_output=True, cwd=TOP)
    assert done.returncode == 0, done.stderr
    result = subprocess.run(command.replace("/tmp/qgrey-demo", str(state)), shell=True, env=env,
                            capture_output=True, cwd=str(tmp_path))
    assert result.returncode == 0
    assert os.path.realpath(str(bindir / "qgrey")) == str(prefix / "bin" / "qgrey")
    text = open(README).read()
    assert ("```\n%s%s```" % (result.stdout.decode(), result.stderr.decode())) in text


def test_install_again_upgrades_in_place(tmp_path):
    args = [sys.executable, "-m", "qgrey.install", "--prefix", str(tmp_path / "opt"),
            "--bin", str(tmp_path / "bin")]
    for _ in range(2):
        assert subprocess.run(args, cwd=TOP, capture_output=True).returncode == 0
    lib = [d for d, _, files in os.walk(str(tmp_path / "opt")) if d.endswith("/qgrey")]
    assert len(lib) == 1 and not os.path.exists(lib[0] + ".old")
    assert sorted(os.listdir(str(tmp_path / "bin"))) == [
        "qgrey", "qgrey-admin", "qgrey-data", "qgrey-expire", "qgrey-report"]
    assert sorted(os.listdir(str(tmp_path / "share" / "man" / "man8"))) == [
        "qgrey-admin.8", "qgrey-expire.8", "qgrey-report.8", "qgrey.8"]
    usage = subprocess.run([sys.executable, "-m", "qgrey.install", "--bogus"], cwd=TOP,
                           capture_output=True)
    assert (usage.returncode, usage.stderr) == (
        100, b"usage: python3 -m qgrey.install [--prefix DIR] [--bin DIR] [--python PATH]\n")


def test_the_retry_shown_passes_as_shown(tmp_path):
    """'Run it again ... (or at once with GL_DELAY=0 in both runs)': the quick
    start's command twice with GL_DELAY=0, through the installed launcher; the
    second run's reply and log line have the README's shape, word for word
    but for the seconds waited, the version and the date."""
    _, _, command = quick_start_lines()
    text = open(README).read()
    shown = re.search(r"Run it again after five minutes.*?```\n(.*?)```", text, re.S).group(1)
    header, log = shown.splitlines()
    wildcards = {"312": r"(\d+)", "qgrey-0.1.0": r"qgrey-[0-9.]+",
                 "Mon, 23 Nov 2026 10:05:12 +0000": r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000"}
    pieces = re.split("(%s)" % "|".join(map(re.escape, wildcards)), header + "\n" + log + "\n")
    assert len(pieces) == 9, pieces  # each wildcard once, the seconds twice
    pattern = "".join(wildcards.get(piece, re.escape(piece)) for piece in pieces)
    prefix, bindir, state = tmp_path / "opt", tmp_path / "bin", tmp_path / "demo"
    state.mkdir(mode=0o700)
    done = subprocess.run([sys.executable, "-m", "qgrey.install", "--prefix", str(prefix), "--bin", str(bindir)],
                          cwd=TOP, capture_output=True)
    assert done.returncode == 0, done.stderr
    env = {"PATH": "%s:/usr/bin:/bin" % bindir}
    command = command.replace("/tmp/qgrey-demo", str(state)).replace("env ", "env GL_DELAY=0 ", 1)
    runs = [subprocess.run(command, shell=True, env=env, capture_output=True, cwd=str(tmp_path))
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stdout == b"E451 4.7.1 Greylisted, please try again later\n"
    second = (runs[1].stdout + runs[1].stderr).decode()
    found = re.fullmatch(pattern, second)
    assert found, (pattern, second)
    assert found.group(1) == found.group(2) and int(found.group(1)) <= 5


def test_the_install_page_shows_the_quick_start_install():
    """docs/install.md's command is the one test_quick_start_shows_one_real_decision runs."""
    install = quick_start_lines()[0]
    with open(os.path.join(TOP, "docs", "install.md")) as f:
        page = f.read()
    assert re.search(r"```sh\n(.*?)```", page, re.S).group(1) == install + "\n"
