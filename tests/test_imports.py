"""The shape of the package: no import circles, and the per-RCPT path's
imports.

Every qgrey module's imports are read with ast (module-level and inside
functions alike), so that an import made only on one path still counts.
"""
import ast
import os
import subprocess
import sys

import pytest

from conftest import SPP_ENV, spp

PACKAGE = os.path.dirname(os.path.abspath(__import__("qgrey").__file__))
PARENT = os.path.dirname(PACKAGE)


def modules():
    """{module name: path} of every qgrey module."""
    found = {}
    for directory, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, PARENT)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path, known):
    """The names this file imports: every import statement, wherever it is;
    `from P import N` names P.N when that is a module, else P."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "%s: a relative import" % path
            for alias in node.names:
                whole = node.module + "." + alias.name
                named.add(whole if whole in known else node.module)
    return named


def graph():
    """{qgrey module: qgrey modules it imports} (a module's own package,
    which Python imports first anyway, is left out)."""
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = {other for other in imports(path, known)
                       if other in known and other != name and not name.startswith(other + ".")}
    return edges


def cycle_in(edges):
    """One import circle as [a, b, ..., a], or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for other in sorted(edges[node]):
            if state.get(other) == "open":
                return trail[trail.index(other):] + [other]
            if other not in state:
                found = visit(other, trail + [other])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_circles():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"a2"}, "a2": {"a"}}) == ["a", "a2", "a"]
    assert cycle_in({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_imports():
    edges = graph()
    assert "qgrey.pools" in edges["qgrey.request"]      # inside Request.pool
    assert "qgrey.datastage" in edges["qgrey.plugin"]   # inside main
    assert "qgrey.htmlreport" in edges["qgrey.report"]  # inside run
    assert "qgrey.store.redis" in edges["qgrey.store"]  # inside open_store


def test_no_module_imports_a_module_that_imports_it_back():
    assert cycle_in(graph()) is None


@pytest.mark.parametrize("one, other", [
    ("qgrey.htmlreport", "qgrey.report"),  # the page renders a tally.Report
    ("qgrey.keys", "qgrey.pools"),         # pools parse addresses with keys
    ("qgrey.lists", "qgrey.request"),      # the lists take a request, never build one
    ("qgrey.policy", "qgrey.request"),     # the rules know no process
    ("qgrey.store", "qgrey.request"),      # storage knows no request
])
def test_imports_go_one_way(one, other):
    edges = graph()
    reachable, todo = set(), [one]
    while todo:
        for name in edges[todo.pop()]:
            if name not in reachable:
                reachable.add(name)
                todo.append(name)
    assert other not in reachable


def test_the_modules_every_decision_loads_import_only_posix_time_and_qgrey():
    """plugin, request and reply are loaded by every run: at module level
    they import nothing outside posix, time and qgrey."""
    known = modules()
    for name in ("qgrey.plugin", "qgrey.request", "qgrey.reply"):
        with open(known[name], encoding="utf-8") as f:
            tree = ast.parse(f.read())
        top = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                top.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                top.add(node.module)
        assert {n for n in top if not n.startswith("qgrey")} <= {"posix", "time"}, (name, top)


def test_the_list_file_names_are_the_lists():
    from qgrey import lists, request
    assert set(request.LIST_FILES) == {name for name, _ in lists.WHITELISTS} | {lists.GREYTRAPS}
    assert set(request.LIST_FILES) == {"whitelist-clients", "whitelist-recipients",
                                       "whitelist-senders", "greytraps"}


PROBE = r"""
import sys, time
floor = set(sys.modules)
sys.path.insert(0, sys.argv[1])
import posix
from qgrey import plugin, request
stage = sys.argv[2]
req = request.from_environ(posix.environ, stage, [])
if stage == "data":
    from qgrey import datastage
    datastage.decide_data(req, int(time.time()))
else:
    plugin.decide_rcpt(req, int(time.time()))
print(" ".join(sorted(set(sys.modules) - floor)))
"""


def loaded(gl_dir, stage="rcpt", **env):
    environment = dict(SPP_ENV, GL_DIR=gl_dir, **env)
    result = spp([sys.executable, "-I", "-S", "-c", PROBE, PARENT, stage], environment)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.decode().split())


def test_a_whitelisted_client_loads_no_settings(gl_dir):
    assert loaded(gl_dir, GL_WHITELISTED="") == {"qgrey", "qgrey.plugin", "qgrey.reply",
                                                 "qgrey.request"}


def test_a_decision_without_list_files_pays_for_no_list(run, gl_dir):
    run()  # the database exists
    new = loaded(gl_dir, SMTPRCPTTO="other@example.net")
    assert "qgrey.store" in new and "qgrey.policy" in new  # a real decision
    assert not new & {"qgrey.lists", "qgrey.files", "qgrey.salt", "qgrey.pools",
                      "qgrey.datastage", "hashlib"}, new


def test_lists_and_pools_are_loaded_when_they_are_used(run, gl_dir):
    with open(os.path.join(gl_dir, "greytraps"), "w") as f:
        f.write("trap@example.net\n")
    used = loaded(gl_dir, GL_HOST_POOLS="1", TCPREMOTEHOST="mail-ed1-f41.google.com")
    assert {"qgrey.lists", "qgrey.pools"} <= used, used


def test_the_data_run_loads_no_rules(gl_dir):
    # A passed message: the state says so, nothing is read from the store.
    used = loaded(gl_dir, "data", QGREY_DATA="2,1,0,0,known,-,mail")
    assert {"qgrey.datastage", "qgrey.request", "qgrey.reply"} <= used
    assert not used & {"qgrey.policy", "qgrey.keys", "qgrey.store", "qgrey.lists"}, used


IDENTITY = {"qgrey.identity", "qgrey.dns", "qgrey.spf", "qgrey.pools", "_socket"}


def test_spf_and_selective_greylisting_load_nothing_for_a_known_sender(run, gl_dir):
    # GL_SPF=0 and GL_GREYLIST=all (the defaults): a new triplet loads none of it
    run()
    assert not loaded(gl_dir, SMTPRCPTTO="other@example.net") & IDENTITY
    # with them on, a known triplet is decided by its network key: nothing loaded
    modes = dict(GL_SPF="1", GL_GREYLIST="suspicious", GL_HOST_NAMES="dns",
                 GL_DNS="127.0.0.1:9", GL_DNS_TIMEOUT="0.2")
    run(GL_LEARN="1")  # recorded as passed
    used = loaded(gl_dir, **modes)
    assert "qgrey.policy" in used and not used & IDENTITY, used
    # a new triplet is a miss: the identity is learned
    used = loaded(gl_dir, SMTPRCPTTO="third@example.net", **modes)
    assert IDENTITY - {"_socket"} <= used, used


def test_a_name_recorded_for_the_address_loads_no_resolver(run, gl_dir):
    """GL_HOST_NAMES=dns with GL_HOST_POOLS: a known pooled sender whose
    verified name is recorded (name ADDRESS>HOST) is decided by its pool
    without qgrey.dns, qgrey.spf or _socket."""
    import sqlite3
    import time
    run()  # the database exists
    now = int(time.time())
    db = sqlite3.connect(os.path.join(gl_dir, "qgrey.sqlite"))
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", [
        ("name 198.51.100.7>mail.staticmail.net", now - 60, now - 60, now - 60, 1),
        ("staticmail.net alice@example.org third@example.net", now - 900, now - 600, now - 600, 1)])
    db.commit()
    db.close()
    used = loaded(gl_dir, GL_HOST_POOLS="1", GL_HOST_NAMES="dns", GL_DNS="127.0.0.1:9",
                  GL_DNS_TIMEOUT="0.2", SMTPHELOHOST="mail.staticmail.net",
                  SMTPRCPTTO="third@example.net")
    assert {"qgrey.identity", "qgrey.pools"} <= used, used
    assert not used & {"qgrey.dns", "qgrey.spf", "_socket"}, used
