#!/usr/bin/env python3
"""Simulation of GL_GREYLIST=all against GL_GREYLIST=suspicious: the delay
real mail servers see and the share of zombies' messages accepted.

    python3 bench/selective_sim.py [--seed N] [--days D]

qgrey's own decision runs in-process (qgrey.plugin.decide_rcpt, with its
lists, keys, identity, pools and policy modules, on a real SQLite database
in a temporary GL_DIR) on a fake clock: every attempt is decided at its
simulated time, given as `now`. GL_HOST_NAMES=dns, with the resolver
replaced by a table of PTR and A records (the zone below), so that names
and HELO names are verified by qgrey's code as against a real server.
Other settings are the defaults (GL_DELAY 300 seconds, /24 keys,
auto-whitelisting after 5 deliveries).

Retry schedules, seconds after the first attempt, from the seed texts
(sendmail 0, 15 min; Exim 0, 15 min; Postfix 0, 16.6 min; qmail 0, 6:40,
26:40, quadratic; Courier 0, 5, 10, 15, 30, 35, 40, 70, 75, 80 min;
Exchange 0, 1, 2, 22, 42, 62 min), continued as each MTA continues.
Zombies send each message once, or retry a few times within minutes (as
spam software that retries at all does), never on a mail server's queue.

The population (numbers per 100 real servers, scaled by --servers):
real servers
  80  a static name, forward-confirmed (mail.orgN.com); HELO that name
  10  a dynamic-looking PTR name (its address in it), HELO a name of their
      own that resolves to them (mx.orgN.com): rescued by the HELO check
   5  a dynamic-looking PTR name, HELO that same name: suspicious
   5  no PTR record, HELO a name that does not resolve: suspicious
zombies (per 100 real servers: 250)
 150  a dynamic PTR name (dsl-...-dyn, forward-confirmed), HELO an address
      literal or a made-up word
  75  no PTR record
  25  a static, forward-confirmed name (a compromised web server or rented
      host: www.shopN.com), HELO that name: NOT suspicious
Each real server sends 6 messages on average over the days, from 1 to 3
senders to 40 local recipients (triplets repeat: known senders pass);
each zombie sends 5 messages to random recipients.

It prints, per mode, the delay of real mail (every message; first
messages of a triplet; median, 90th percentile, longest), the share of
real messages delayed, and the share of zombie messages accepted (by
kind of zombie), and the DNS questions per decision.
"""
import argparse
import heapq
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout: its qgrey

from qgrey import dns, plugin, request as request_module, settings as settings_module  # noqa: E402

MINUTE, HOUR, DAY = 60, 3600, 86400
# Retry schedules (seconds after the first attempt) from the seed texts,
# continued as each MTA continues; a message gives up after the last.
SCHEDULES = {
    "sendmail": [0, 900, 1800, 3600, 7200, 14400],
    "exim": [0, 900, 1800, 2700, 3600, 7200],
    "postfix": [0, 996, 1996, 3996, 7996, 11996],
    "qmail": [0, 400, 1600, 3600, 6400, 10000],
    "courier": [m * MINUTE for m in (0, 5, 10, 15, 30, 35, 40, 70, 75, 80)],
    "exchange": [m * MINUTE for m in (0, 1, 2, 22, 42, 62, 82, 102)],
}
# Spam software: no retry, or a few retries within minutes.
BOT_SCHEDULES = (([0], 70), ([0, 30, 60, 120], 20), ([0, 15, 45, 90, 180, 240], 10))
REAL_KINDS = (("static name", 80), ("dynamic PTR, good HELO", 10),
              ("dynamic PTR, HELO its PTR", 5), ("no PTR, bad HELO", 5))
ZOMBIE_KINDS = (("dynamic PTR", 150), ("no PTR", 75), ("static name", 25))
RECIPIENTS = ["user%d@local.example.net" % i for i in range(40)]


class Zone:
    """PTR and A records; anything else does not exist."""

    def __init__(self):
        self.ptr, self.a = {}, {}

    def add(self, ip, ptr=None, names=()):
        if ptr:
            self.ptr[reverse(ip)] = [ptr]
        for name in names:
            self.a.setdefault(name, []).append(ip)


def reverse(ip):
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


class Resolver:
    """qgrey.dns.Resolver's interface over a Zone: answers at once."""

    def __init__(self, zone):
        self.zone, self.queries, self.cache = zone, 0, {}

    def query(self, name, qtype):
        qtype = {dns.A: "A", dns.PTR: "PTR", dns.AAAA: "AAAA"}.get(qtype, qtype)
        key = (name.lower().rstrip("."), qtype)
        if key not in self.cache:
            self.queries += 1
            table = {"PTR": self.zone.ptr, "A": self.zone.a}.get(qtype, {})
            found = table.get(key[0])
            self.cache[key] = (dns.OK, list(found)) if found else (dns.NXDOMAIN, [])
        return self.cache[key]

    def restart(self):
        pass


def pick(rng, weighted):
    total = sum(w for _, w in weighted)
    at = rng.uniform(0, total)
    for item, weight in weighted:
        at -= weight
        if at <= 0:
            return item
    return weighted[-1][0]


class Client:
    def __init__(self, ip, real, kind, helo, senders, schedule=None):
        self.ip, self.real, self.kind, self.helo = ip, real, kind, helo
        self.senders, self.schedule = senders, schedule


def population(rng, servers, zone):
    clients = []
    scale = servers / 100.0
    n = 0

    def address():
        nonlocal n
        n += 1  # a /24 of its own for every client: keys never collide
        return "%d.%d.%d.%d" % (11 + n // 65536, n // 256 % 256, n % 256, rng.randint(2, 250))

    for kind, per in REAL_KINDS:
        for i in range(int(round(per * scale))):
            ip = address()
            dashed = ip.replace(".", "-")
            org = "orgsim%d%d.com" % (n, i)
            if kind == "static name":
                name = "mail." + org
                zone.add(ip, name, [name])
                helo = name
            elif kind == "dynamic PTR, good HELO":
                ptr = "%s.customer.hostsim.net" % dashed
                zone.add(ip, ptr, [ptr, "mx." + org])
                helo = "mx." + org
            elif kind == "dynamic PTR, HELO its PTR":
                ptr = "%s.customer.hostsim.net" % dashed
                zone.add(ip, ptr, [ptr])
                helo = ptr
            else:
                helo = "mailhost.internal.lan"
            senders = ["%s@%s" % (who, org) for who in ("news", "alice", "billing")[:rng.randint(1, 3)]]
            mta = rng.choice(sorted(SCHEDULES))
            clients.append(Client(ip, True, kind, helo, senders, SCHEDULES[mta]))
    for kind, per in ZOMBIE_KINDS:
        for i in range(int(round(per * scale))):
            ip = address()
            dashed = ip.replace(".", "-")
            if kind == "dynamic PTR":
                ptr = "dsl-%s.dyn.telesim.net" % dashed
                zone.add(ip, ptr, [ptr])
                helo = rng.choice(["[%s]" % ip, "user-pc", "localhost", ptr])
            elif kind == "no PTR":
                helo = rng.choice(["[%s]" % ip, "win-desktop", "localhost"])
            else:
                name = "www.shopsim%d.com" % n
                zone.add(ip, name, [name])
                helo = name
            senders = ["promo%d@freemailsim.com" % rng.randint(1, 10 ** 6)]
            clients.append(Client(ip, False, kind, helo, senders))
    return clients


def messages(rng, clients, days):
    """-> [(first attempt time, client, sender, recipient, schedule)]"""
    out = []
    for client in clients:
        if client.real:
            count = max(1, int(rng.expovariate(1 / 6.0) + 0.5))
            for _ in range(count):
                out.append((rng.uniform(0, days * DAY), client, rng.choice(client.senders),
                            rng.choice(RECIPIENTS), client.schedule))
        else:
            for _ in range(5):
                out.append((rng.uniform(0, days * DAY), client,
                            "x%d@spamsim%d.com" % (rng.randint(1, 10 ** 6), rng.randint(1, 50)),
                            rng.choice(RECIPIENTS), pick(rng, BOT_SCHEDULES)))
    return out


def simulate(mode, seed, servers, days, start=1790000000):
    rng = random.Random(seed)
    zone = Zone()
    clients = population(rng, servers, zone)
    mail = messages(rng, clients, days)
    directory = tempfile.mkdtemp(prefix="qgrey-sim-")
    try:
        environ = {b"GL_DIR": directory.encode(), b"GL_GREYLIST": mode.encode(),
                   b"GL_HOST_NAMES": b"dns"}
        settings = settings_module.load(environ)
        assert not settings.problems, settings.problems
        events = []
        for number, (t0, client, sender, recipient, schedule) in enumerate(mail):
            heapq.heappush(events, (start + int(t0), number, 0))
        result = {"real": [], "first": [], "zombie": {}, "queries": 0, "decisions": 0,
                  "real_delayed": 0}
        seen_triplets = set()
        while events:
            now, number, attempt = heapq.heappop(events)
            t0, client, sender, recipient, schedule = mail[number]
            env = {b"TCPREMOTEIP": client.ip.encode(), b"SMTPHELOHOST": client.helo.encode(),
                   b"SMTPMAILFROM": sender.encode(), b"SMTPRCPTTO": recipient.encode(),
                   b"SMTPRCPTCOUNT": b"0", b"SMTPRCPTCOUNTALL": b"1", b"SMTPRCPTHOSTSOK": b"1"}
            req = request_module.from_environ(env, "rcpt", [])
            req.__dict__["settings"] = settings
            req.__dict__["resolver"] = Resolver(zone)
            decision = plugin.decide_rcpt(req, now)
            result["decisions"] += 1
            result["queries"] += req.__dict__["resolver"].queries
            accepted = decision.action != "greylist"
            if accepted or attempt + 1 >= len(schedule):
                delay = now - (start + int(t0)) if accepted else None
                if client.real:
                    result["real"].append(delay)
                    triplet = (client.ip, sender, recipient)
                    if triplet not in seen_triplets:
                        seen_triplets.add(triplet)
                        result["first"].append(delay)
                    if delay:
                        result["real_delayed"] += 1
                else:
                    done = result["zombie"].setdefault(client.kind, [0, 0])
                    done[0] += accepted
                    done[1] += 1
            else:
                heapq.heappush(events, (start + int(t0) + schedule[attempt + 1], number, attempt + 1))
        return result
    finally:
        shutil.rmtree(directory)


def percentile(values, share):
    """The value at share (0..1) of the sorted values (nearest rank)."""
    values = sorted(values)
    if not values:
        return None
    rank = max(1, int(-(-share * len(values) // 1)))
    return values[rank - 1]


def span(seconds):
    if seconds is None:
        return "-"
    return "%dm%02ds" % (seconds // 60, seconds % 60)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--servers", type=int, default=200, help="real servers (default 200)")
    parser.add_argument("--days", type=int, default=3)
    args = parser.parse_args(argv)
    print("selective greylisting simulation: seed %d, %d real servers, %d zombies, %d days"
          % (args.seed, args.servers, int(round(2.5 * args.servers)), args.days))
    for mode in ("all", "suspicious"):
        r = simulate(mode, args.seed, args.servers, args.days)
        real = r["real"]
        lost = sum(1 for d in real if d is None)
        delays = [d for d in real if d is not None]
        first = [d for d in r["first"] if d is not None]
        print("\nGL_GREYLIST=%s" % mode)
        print("  real messages %d, delayed %d (%.1f%%), not delivered within the schedule %d"
              % (len(real), r["real_delayed"], 100.0 * r["real_delayed"] / len(real), lost))
        print("  delay of real mail, all messages:   median %s  p90 %s  longest %s" % (
            span(percentile(delays, 0.5)), span(percentile(delays, 0.9)), span(max(delays))))
        print("  delay of real mail, first messages: median %s  p90 %s  longest %s" % (
            span(percentile(first, 0.5)), span(percentile(first, 0.9)), span(max(first))))
        total = [0, 0]
        for kind, _ in ZOMBIE_KINDS:
            accepted, count = r["zombie"].get(kind, [0, 0])
            total[0] += accepted
            total[1] += count
            print("  zombie messages accepted, %-12s %4d of %4d (%.1f%%)" % (
                kind + ":", accepted, count, 100.0 * accepted / count if count else 0))
        print("  zombie messages accepted, all:          %4d of %4d (%.1f%%)" % (
            total[0], total[1], 100.0 * total[0] / total[1]))
        print("  DNS questions per decision %.2f (%d decisions)" % (
            r["queries"] / float(r["decisions"]), r["decisions"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
