"""The settings table, the README and the man page say the same."""
import os
import re

import pytest

from qgrey import settings

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*path):
    with open(os.path.join(TOP, *path)) as f:
        return f.read()


@pytest.mark.parametrize("name, parse, default, meaning", settings.TABLE)
def test_every_setting_is_documented_with_its_default(name, parse, default, meaning):
    row = re.search(r"^\| `%s` \| `([^`]*)` \|" % name, read("README.md"), re.M)
    assert row, "%s missing from the README settings table" % name
    assert parse(row.group(1)) == parse(default)
    man = read("man", "qgrey.8")
    assert re.search(r"^\.B %s$" % name, man, re.M), "%s missing from man/qgrey.8" % name


def test_every_console_script_has_a_man_page():
    scripts = re.findall(r"^(qgrey[-a-z]*) = ", read("pyproject.toml"), re.M)
    assert "qgrey" in scripts and len(scripts) >= 4
    for script in scripts:
        assert os.path.exists(os.path.join(TOP, "man", script + ".8")), script


def test_ci_runs_the_readme_test_command():
    block = re.search(r"## Tests\n\n```sh\n(.*?)```", read("README.md"), re.S).group(1)
    assert block.splitlines() == [
        "python3 -m venv /tmp/qgrey-venv && . /tmp/qgrey-venv/bin/activate",
        "pip install '.[test]'", "pytest"]
    ci = read(".ci", "run")
    assert '-m venv "$venv"' in ci and "pip install" in ci and "[test]" in ci \
        and '"$venv/bin/pytest"' in ci


@pytest.mark.parametrize("page", sorted(p for p in os.listdir(os.path.join(TOP, "man")) if p.endswith(".8")))
def test_man_pages_lint_clean(page):
    import shutil
    import subprocess
    if shutil.which("mandoc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mandoc is missing, and CI=true: .ci/run must install it")
        pytest.skip("mandoc is not installed (Debian: apt-get install mandoc)")
    result = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", os.path.join(TOP, "man", page)],
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
