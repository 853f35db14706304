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
