"""README, docs/ pages, man pages and the settings table say the same.

man/qgrey.8 is the reference: every setting once, with its default. The
README is the front door: short, its day-one settings agreeing with the
table, and linking every page under docs/, each of which must exist."""
import glob
import os
import re

import pytest

from qgrey import settings

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250
# Settings that are not in settings.TABLE: GL_DIR says where the table's
# file is (environment only); GL_WHITELISTED is a flag for tcprules.
OUTSIDE_TABLE = {"GL_DIR": "/var/qmail/qgrey", "GL_WHITELISTED": None}


def read(*path):
    with open(os.path.join(TOP, *path)) as f:
        return f.read()


def plain(roff):
    """The text of roff source, macros and font escapes removed."""
    words = []
    for line in roff.splitlines():
        if line.startswith("."):
            macro, _, rest = line[1:].partition(" ")
            args = re.findall(r'"([^"]*)"|(\S+)', rest)
            args = ['"%s"' % a if a else b for a, b in args]  # a quoted phrase stays one
            joiner = " " if macro in ("B", "I", "SM") else ""
            line = joiner.join(args)
        words.append(line)
    text = " ".join(words)
    text = re.sub(r"\\f[BIRP]", "", text).replace("\\-", "-").replace("\\(em", "-").replace("\\e", "\\")
    return re.sub(r"\s+", " ", text).strip()


def man_settings():
    """{name: plain text of its entry} from man/qgrey.8's ENVIRONMENT section."""
    man = read("man", "qgrey.8")
    section = man[man.index("\n.SH ENVIRONMENT\n"):]
    section = section[:section.index("\n.SH ", 1)]
    entries = {}
    for block in section.split("\n.TP\n")[1:]:
        tag, _, body = block.partition("\n")
        assert tag.startswith(".B GL_"), tag
        name = tag[3:]
        assert name not in entries, "%s documented twice in man/qgrey.8" % name
        entries[name] = plain(re.split(r"\n\.(?:PP|SH)\b", body)[0])
    return entries


def man_default(text):
    found = (re.search(r'\bDefault ("[^"]*"|\S+?)[.:;,]?(?= |$)', text)
             or re.search(r"(\S+) \((?:the )?default\)", text))
    return found and found.group(1).strip('"')


def readme_rows():
    return re.findall(r"^\| `(GL_[A-Z0-9_]+)` \| (`[^`]*`|unset) \|", read("README.md"), re.M)


def test_the_man_page_documents_no_setting_that_does_not_exist():
    names = {row[0] for row in settings.TABLE} | set(OUTSIDE_TABLE)
    assert set(man_settings()) == names


@pytest.mark.parametrize("name, parse, default, meaning", settings.TABLE)
def test_every_setting_is_documented_once_in_the_man_page_with_its_default(name, parse, default, meaning):
    man = read("man", "qgrey.8")
    assert man.count("\n.TP\n.B %s\n" % name) == 1, "%s: not one entry in man/qgrey.8" % name
    text = man_settings()[name]
    documented = man_default(text)
    assert documented is not None, "%s: no default in man/qgrey.8: %s" % (name, text)
    assert parse(documented) == parse(default), (name, documented, default)


def test_the_settings_outside_the_table_are_in_the_man_page():
    entries = man_settings()
    assert man_default(entries["GL_DIR"]) == "/var/qmail/qgrey"
    assert "environment only" in entries["GL_DIR"].lower()
    assert man_default(entries["GL_WHITELISTED"]) is None and "any value" in entries["GL_WHITELISTED"]


def test_the_readme_day_one_settings_agree_with_the_table_and_the_man_page():
    table = {row[0]: row for row in settings.TABLE}
    rows = readme_rows()
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a setting twice in the README"
    for must in ("GL_DIR", "GL_DELAY", "GL_MESSAGE", "GL_ON_ERROR", "GL_STORE", "GL_STAGE"):
        assert must in names, must
    man = man_settings()
    for name, shown in rows:
        assert name in man, "%s is in the README, not in man/qgrey.8" % name
        if name in OUTSIDE_TABLE:
            expected = OUTSIDE_TABLE[name]
            assert shown == ("unset" if expected is None else "`%s`" % expected), name
            continue
        assert shown != "unset", name
        _, parse, default, _ = table[name]
        assert parse(shown.strip("`")) == parse(default), (name, shown, default)


def test_readme_and_docs_name_only_settings_that_exist():
    known = {row[0] for row in settings.TABLE} | set(OUTSIDE_TABLE)
    for path in ["README.md"] + sorted(glob.glob(os.path.join(TOP, "docs", "*.md"))):
        text = read(path)
        found = set(re.findall(r"\bGL_[A-Z0-9_]*[A-Z0-9]\b", text))
        assert found <= known, (path, found - known)


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
    # .ci/run runs these lines, word for word, with its interpreter for
    # python3 and its own directory for /tmp/qgrey-venv, in a subshell with
    # set -e; pytest's options come from PYTEST_ADDOPTS, pip's from PIP_*.
    ci = read(".ci", "run")
    run = re.search(r"\n( *)\( *\n\1set -e\n\1cd \"\$top\"\n"
                    r"(?:\1#[^\n]*\n)*((?:\1[^ )#][^\n]*\n)+)\1\)\n", ci)
    assert run, ".ci/run has no subshell running the README's test command"
    assert [line[len(run.group(1)):] for line in run.group(2).splitlines()] == [
        '"$py" -m venv "$venv" && . "$venv/bin/activate"',
        "pip install '.[test]'", "pytest"]
    assert [re.sub(r"/tmp/qgrey-venv(\S*)", r'"$venv\1"', re.sub(r"^python3 ", '"$py" ', line))
            for line in block.splitlines()] == [
        line[len(run.group(1)):] for line in run.group(2).splitlines()]
    # Every skip shown with its reason; checked against tests/skips.py.
    assert re.search(r'^export PYTEST_ADDOPTS="-rs ', ci, re.M)
    assert "CI=true: [0-9]* skips, each allowed by tests/skips.py" in ci


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


def links(path):
    """The relative link targets of a markdown file, without #anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", read(path))
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_readme_is_a_front_door():
    text = read("README.md")
    assert len(text.splitlines()) <= README_MAX_LINES
    headings = re.findall(r"^## (.*)$", text, re.M)
    for heading in ("Quick start", "Wiring it into qmail", "What it answers",
                    "Settings that matter on day one", "Tests"):
        assert heading in headings, heading
    wiring = text[text.index("## Wiring it into qmail\n"):text.index("## What it answers\n")]
    for topic in ("control/smtpplugins", "tcprules", "softlimit -m 32000000", "examples/run",
                  "mkdir -m 700 /var/qmail/qgrey", "chown qmaild /var/qmail/qgrey"):
        assert topic in wiring, topic
    assert "[man/qgrey.8](man/qgrey.8)" in text


def test_every_docs_page_is_linked_from_the_readme_and_every_link_resolves():
    pages = sorted(os.path.relpath(p, TOP) for p in glob.glob(os.path.join(TOP, "docs", "*.md")))
    linked = set(links("README.md"))
    assert set(pages) <= linked, set(pages) - linked
    for page in ["README.md"] + pages:
        here = os.path.dirname(os.path.join(TOP, page))
        for target in links(page):
            assert os.path.isfile(os.path.normpath(os.path.join(here, target))), (page, target)


def test_the_run_script_shown_is_the_example_run_script():
    """The README's run-script lines are examples/run's, which tests/test_run_script.py runs."""
    text = read("README.md")
    block = re.search(r"`examples/run` is a daemontools.*?```sh\n(.*?)```", text, re.S).group(1)
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    example = [line.split("#")[0].strip() for line in read("examples", "run").splitlines()]
    for line in lines:
        if line.startswith("GL_") or line.startswith("export "):
            assert line in example, line
    assert "exec softlimit -m 32000000 \\" in lines and "exec softlimit -m 32000000 \\" in example


def test_the_testing_page_shows_the_readme_test_command():
    command = re.search(r"## Tests\n\n```sh\n(.*?)```", read("README.md"), re.S).group(1)
    assert ("```sh\n%s```" % command) in read("docs", "testing.md")


def test_the_redis_acl_shown_is_the_one_the_redis_tests_grant():
    """docs/redis.md's ACL line grants what tests/test_redis.py's qgrey user
    has, and the plugin works with that user there."""
    import ast
    source = read("tests", "test_redis.py")
    tree = ast.parse(source)
    granted = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
               and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["QGREY_ACL"]]
    assert len(granted) == 1
    shown = re.search(r"^ACL SETUSER qgrey on >PASSWORD (.*)$", read("docs", "redis.md"), re.M).group(1)
    tested = [word for word in granted[0][3:] if not word.startswith(">")]
    assert shown.split() == tested[1:], (shown, tested)
