"""The settings table: environment over GL_DIR/config, bad values reported."""
from qgrey import settings


def load(env, tmp_path, config=None):
    if config is not None:
        (tmp_path / "config").write_text(config)
    env = {k.encode(): v.encode() for k, v in dict(env, GL_DIR=str(tmp_path)).items()}
    return settings.load(env)


def test_defaults(tmp_path):
    s = load({}, tmp_path)
    assert (s.delay, s.retry_window, s.lifetime) == (300, 172800, 36 * 86400)
    assert s.mask_ip and not s.ignore_sender and s.on_error == "accept" and s.store == "sqlite"
    assert s.problems == [] and s.dir == str(tmp_path)


def test_durations_with_suffixes(tmp_path):
    s = load({"GL_DELAY": "5m", "GL_RETRY_WINDOW": "4h", "GL_LIFETIME": "1d", "GL_LOCK_TIMEOUT": "0.5"}, tmp_path)
    assert (s.delay, s.retry_window, s.lifetime, s.lock_timeout) == (300, 14400, 86400, 0.5)


def test_environment_overrides_file(tmp_path):
    s = load({"GL_DELAY": "60"}, tmp_path, "# comment\nGL_DELAY=600\n\nGL_MASK_IP = 0\n")
    assert s.delay == 60 and s.mask_ip is False and s.problems == []


def test_bad_values_are_reported_with_name_and_source(tmp_path):
    s = load({"GL_DELAY": "soon", "GL_ON_ERROR": "maybe"}, tmp_path,
             "GL_LIFETIME=-1\nGL_NOPE=1\nnonsense\nGL_MESSAGE=bad\x01text\n")
    assert s.delay == 300 and s.on_error == "accept" and s.lifetime == 36 * 86400
    text = "\n".join(s.problems)
    assert "GL_DELAY=soon from environment: not a duration" in text
    assert "GL_ON_ERROR=maybe from environment: not one of accept, defer, local; using accept" in text
    assert "GL_LIFETIME=-1 from %s/config line 1" % tmp_path in text
    assert "line 2: unknown setting GL_NOPE" in text
    assert "line 3: not NAME=value" in text
    assert "GL_MESSAGE=bad?text" in text
    assert len(s.problems) == 6


def test_window_shorter_than_delay_is_refused(tmp_path):
    s = load({"GL_DELAY": "3d"}, tmp_path)  # longer than the default window, 2d
    assert (s.delay, s.retry_window) == (259200, 259201)
    assert s.problems == ["GL_RETRY_WINDOW must be longer than GL_DELAY; using 259201"]
    s = load({"GL_DELAY": "1h", "GL_RETRY_WINDOW": "30m"}, tmp_path)
    assert (s.delay, s.retry_window) == (3600, 172800)
    assert s.problems == ["GL_RETRY_WINDOW must be longer than GL_DELAY; using 2d"]


def test_prefix_lengths_are_validated(tmp_path):
    s = load({"GL_IPV4_PREFIX": "22", "GL_IPV6_PREFIX": "48"}, tmp_path)
    assert (s.ipv4_prefix, s.ipv6_prefix, s.problems) == (22, 48, [])
    for name, value in (("GL_IPV4_PREFIX", "7"), ("GL_IPV4_PREFIX", "33"), ("GL_IPV6_PREFIX", "15"),
                        ("GL_IPV6_PREFIX", "129"), ("GL_IPV6_PREFIX", "/64")):
        s = load({name: value}, tmp_path)
        assert (s.ipv4_prefix, s.ipv6_prefix) == (24, 64)
        low, high, default = (8, 32, 24) if name == "GL_IPV4_PREFIX" else (16, 128, 64)
        assert s.problems == ["%s=%s from environment: not a whole number from %d to %d; using %d"
                              % (name, value, low, high, default)]


def test_redis_servers_are_validated(tmp_path):
    s = load({"GL_REDIS": "unix:/run/redis.sock?db=2, 10.0.0.5:6380/1,[::1]:6379"}, tmp_path)
    assert s.redis == (("unix", "/run/redis.sock", 2), ("inet", ("10.0.0.5", 6380), 1),
                       ("inet6", ("::1", 6379), 0))
    for bad in ("localhost:6379", "10.0.0.5", "[nope]:1", "unix:relative", "10.0.0.5:99999"):
        s = load({"GL_REDIS": bad}, tmp_path)
        assert s.redis == (("inet", ("127.0.0.1", 6379), 0),) and s.problems, bad
