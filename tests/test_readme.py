"""The README's quick start, run as written."""
import os
import re
import subprocess

import pytest

from conftest import installed_command

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def quick_start_command():
    text = open(README).read()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    assert lines[0] == "pip install ." and lines[1].startswith("mkdir -m 700 /tmp/qgrey-demo")
    return lines[2]


def test_quick_start_shows_one_real_decision(tmp_path):
    command = quick_start_command().replace("/tmp/qgrey-demo", str(tmp_path))
    env = {"PATH": os.path.dirname(installed_command()) + ":/usr/bin:/bin"}
    result = subprocess.run(command, shell=True, env=env, capture_output=True, cwd=str(tmp_path))
    assert result.returncode == 0
    text = open(README).read()
    assert ("```\n%s%s```" % (result.stdout.decode(), result.stderr.decode())) in text
