"""Who the client is, from DNS: its verified host name, what its HELO name
proves, its SPF result, the pool it is keyed by, and whether it is
suspicious (GL_SPF=1, GL_GREYLIST=suspicious|trial, GL_HOST_NAMES=dns).

Learned only when a decision needs it: the plugin reads the triplet by its
network key first and asks DNS only on a miss (a new or expired triplet
that nothing else decided), so a known sender never waits for DNS. All the
questions of one decision share one resolver, hence one deadline
(GL_DNS_TIMEOUT) and one cache.

Verified host name (Request.verified_host):
  GL_HOST_NAMES=tcpserver  TCPREMOTEHOST as it is (tcpserver -p confirmed it)
  GL_HOST_NAMES=dns        a PTR name of the client whose A/AAAA records hold
                           its address. TCPREMOTEHOST is only a hint of which
                           PTR name to try first: a name that is not among the
                           PTR names is never verified, whatever it resolves to.
A name must also look like a host name (letters, digits, '-', '.'); it is
lower case without the final dot.

The suspicious verdict (suspicious()): a client is suspicious when
  - it has no verified host name, or the dynamic-name rule (pools.refusal)
    refuses it;
  - unless its HELO name is a host name (no address literal), is not its
    reverse name, passes the same rule and resolves forward to its address;
  - with GL_SPF=1, an SPF fail or softfail makes it suspicious whatever its
    name.
A DNS failure gives no name and no HELO confirmation: suspicious.

SPF pools (spf_pool()): a pass keys the client by 'spf:' + the domain
checked (the sender's domain; the HELO name for the null sender), not by
the domain whose record matched (the innermost of an include chain): a
provider's IPv4 and IPv6 hosts are often listed in different included
records (_netblocks, _netblocks2), and the sender's own domain is what a
forger cannot pass for. A pass proves nothing, and keys by network, when
the term that matched is 'all', a network wider than /16 (IPv4) or /32
(IPv6) (ip4, ip6, a and mx with such a prefix length), or an 'exists'
without a macro (it matches every client or none).

Imports qgrey.dns and qgrey.spf when DNS is asked or SPF evaluated (a
name recorded for the client's address needs neither), and qgrey.pools
when names are judged: never on the path of GL_SPF=0 and GL_GREYLIST=all,
nor on a known sender's.
"""
from qgrey import keys
from qgrey.keys import host_name


def refusal(name, ip_text):
    """pools.refusal; qgrey.pools (its tables) is loaded only for names."""
    from qgrey.pools import refusal
    return refusal(name, ip_text)


def host_pool(name, ip_text):
    from qgrey.pools import pool
    return pool(name, ip_text)


# A pass through a network wider than this proves nothing (prefix lengths).
MIN_PREFIX4, MIN_PREFIX6 = 16, 32


def resolver(settings):
    """The resolver of one decision: GL_DNS, one deadline of GL_DNS_TIMEOUT
    from now."""
    from qgrey import dns
    return dns.Resolver(settings.dns or None, settings.dns_timeout)


def ip_text(request):
    """The client's address as text, or None when TCPREMOTEIP is not one."""
    from qgrey import spf
    raw = (request.client_ip or b"").strip()
    try:
        text = raw.decode("ascii")
    except UnicodeError:
        return None
    return text if spf.parse_ip(text) else None


def _addresses(resolver, name, version):
    from qgrey import dns, spf
    status, records = resolver.query(name, "A" if version == 4 else "AAAA")
    found = set()
    if status == dns.OK:
        for record in records:
            parsed = spf.parse_ip(record)
            if parsed and parsed[0] == version:
                found.add(parsed[1])
    return status, found


def reverse_names(request):
    """The PTR names of the client: (status, [names]) (at most 10)."""
    from qgrey import dns, spf
    text = ip_text(request)
    if text is None:
        return dns.ERROR, []
    version, value = spf.parse_ip(text)
    if version == 4:
        labels = [str(value >> s & 255) for s in (0, 8, 16, 24)]
        name = ".".join(labels) + ".in-addr.arpa"
    else:
        name = ".".join("%x" % (value >> s & 15) for s in range(0, 128, 4)) + ".ip6.arpa"
    status, records = request.resolver.query(name, "PTR")
    return status, [n for n in records[:10] if isinstance(n, str)] if status == dns.OK else []


def forward_confirms(request, name):
    """Whether name's A (or AAAA) records hold the client's address:
    (True or False, DNS status of the forward question)."""
    from qgrey import spf
    version, value = spf.parse_ip(ip_text(request))
    status, found = _addresses(request.resolver, name, version)
    return value in found, status


def verified_host(request):
    """-> (name or None, how): how is 'tcpserver', 'dns', or why no name
    was verified ('no name', 'no PTR', 'PTR not confirmed', 'timeout', ...)."""
    from qgrey import dns
    settings = request.settings
    hint = host_name(request.client_host)
    if settings.host_names != "dns":
        return (hint, "tcpserver") if hint else (None, "no name")
    if ip_text(request) is None:
        return None, "no address"
    status, names = reverse_names(request)
    if status != dns.OK:
        return None, "PTR " + status
    names = [host_name(n) for n in names]
    names = [n for n in names if n]
    if hint in names:  # the hint first, and only as one of the PTR names
        names.remove(hint)
        names.insert(0, hint)
    failure = "PTR not confirmed"
    for name in names:
        confirmed, status = forward_confirms(request, name)
        if confirmed:
            return name, "dns"
        if status in (dns.TIMEOUT, dns.ERROR):
            failure = "forward " + status
    return None, failure


def helo_check(request):
    """What the HELO name proves -> (True, 'confirmed') when it may vouch
    for the client (a host name, not its reverse name, passing the
    dynamic-name rule, resolving forward to its address), else (False, why)."""
    from qgrey import dns, spf
    raw = request.helo
    if not raw:
        return False, "no HELO"
    if raw[:1] == b"[" or spf.parse_ip(raw.decode("ascii", "replace").strip()):
        return False, "address literal"
    name = host_name(raw)
    if name is None:
        return False, "not a host name"
    reverse = {host_name(request.client_host), request.verified_host}
    if request.settings.host_names == "dns":
        reverse.update(host_name(n) for n in reverse_names(request)[1])
    if name in reverse:
        return False, "reverse name"
    why = refusal(name, request.client_ip or b"")
    if why is not None:
        return False, why
    if ip_text(request) is None:
        return False, "no address"
    confirmed, status = forward_confirms(request, name)
    if confirmed:
        return True, "confirmed"
    return False, "not confirmed" if status in (dns.OK, dns.NODATA, dns.NXDOMAIN) else status


def spf_domain(request):
    """The domain SPF checks: the sender's, or the HELO name for <>, or None."""
    return keys.spf_domain(request.sender, request.helo)


def check_spf(request):
    """spf.Result for the client, the envelope sender and the HELO name."""
    from qgrey import spf
    text = ip_text(request)
    if text is None:
        return spf.Result(spf.PERMERROR, reason="client address is not an IP address")
    sender = request.sender.decode("ascii", "replace")
    helo = (request.helo or b"").decode("ascii", "replace")
    if not sender and not helo:
        return spf.Result(spf.NONE, reason="null sender without HELO")
    return spf.check_host(text, None, sender, helo, request.resolver)


def _prefix(term, version):
    """The prefix length a term matched with for an IP version
    ('ip4:192.0.2.0/8' -> 8, 'a:example.com/24//48' -> 24 or 48), or None
    when it gives none (the whole address)."""
    body = term.lstrip("+-~?")
    cut = min([i for i in (body.find(":"), body.find("/")) if i >= 0] or [len(body)])
    name, rest = body[:cut].lower(), body[cut:]
    if name in ("ip4", "ip6"):
        length = rest.rpartition("/")[2] if "/" in rest else ""
        return int(length) if length.isdigit() else None
    cidr4 = cidr6 = ""
    if "//" in rest:
        rest, _, cidr6 = rest.rpartition("//")
    if "/" in rest:
        rest, _, cidr4 = rest.rpartition("/")
    length = cidr4 if version == 4 else cidr6
    return int(length) if length.isdigit() else None


def proves_nothing(result, version):
    """Why a pass proves nothing about the client (None when it does):
    'all', 'wide network', 'constant exists'."""
    term = (result.term or "").strip()
    name = term.lstrip("+-~?").partition(":")[0].partition("/")[0].lower()
    if name == "all":
        return "all"
    if name == "exists":
        return None if "%" in term else "constant exists"
    if name in ("ip4", "ip6", "a", "mx"):
        length = _prefix(term, version)
        if length is not None and length < (MIN_PREFIX4 if version == 4 else MIN_PREFIX6):
            return "wide network"
    return None


def spf_pool(request, result):
    """The pool a result keys the client by ('spf:example.com'), or None."""
    return pool_of(result, ip_text(request), spf_domain(request))


def pool_of(result, ip, domain):
    """The pool of an SPF result for the client ip (text) and the domain
    checked, or None: a pass that proves something about the client."""
    from qgrey import spf
    if result.result != spf.PASS or domain is None or spf.parse_ip(ip or "") is None:
        return None
    if proves_nothing(result, spf.parse_ip(ip)[0]):
        return None
    return keys.spf_pool(domain)


class Identity:
    """What one decision learned of its client (for the log and qgrey-admin
    explain):
      name, how      verified host name (or None) and how ('tcpserver', 'dns')
                     or why there is none
      dynamic        why the dynamic-name rule refuses the name, or None
      helo           (confirmed, why) of the HELO check, or None (not needed)
      helo_name      the HELO name when it confirmed the client, or None
      spf            the spf.Result evaluated, or None (none, or cached)
      spf_text       the SPF result for the log ('pass' from the cache too)
      spf_cached     the pass came from the store's spf entry: no evaluation
      spf_pooled     a fresh evaluation pooled the client (the plugin records it)
      spf_unit       what the pass is recorded for: the client's network when
                     the result holds for all of it, else its address
      pool           the pool the keys use, or None (the client's network)
      pool_reason    why an SPF pass did not pool ('all', 'wide network', ...)
      suspicious     True or False under GL_GREYLIST=suspicious|trial, else None
      why            the verdict's reason
      queries        DNS questions sent"""

    def __init__(self):
        self.name = self.how = self.dynamic = None
        self.helo = self.helo_name = None
        self.spf = self.spf_text = None
        self.spf_cached = self.spf_pooled = False
        self.spf_unit = None
        self.pool = self.pool_reason = None
        self.suspicious = self.why = None
        self.queries = 0


def learn(request, cached):
    """Everything the decision needs to know of the client -> Identity.
    cached: the store's pass of this client's network or address for the
    domain, recorded and not expired (the plugin's first read), or None."""
    settings = request.settings
    identity = Identity()
    identity.pool = request.pool  # a tcpserver host pool, known without DNS
    if settings.spf:
        from qgrey import spf
        domain = spf_domain(request)
        if cached is not None and domain:
            identity.spf_text, identity.spf_cached = spf.PASS, True
            pooled = keys.spf_pool(domain)
        else:
            identity.spf = request.spf
            identity.spf_text = identity.spf.result
            pooled = spf_pool(request, identity.spf)
            if pooled is None and identity.spf.result == spf.PASS:
                identity.pool_reason = proves_nothing(identity.spf, spf.parse_ip(ip_text(request))[0])
        if identity.pool is None and pooled is not None:
            identity.pool = pooled
            identity.spf_pooled = not identity.spf_cached
            if identity.spf_pooled:
                identity.spf_unit = keys.spf_unit(request.client_ip or b"", settings,
                                                  identity.spf.scope)
    names = settings.greylist != "all" or (settings.host_names == "dns" and settings.host_pools)
    if names:
        identity.name, identity.how = request.verified_host, request.verified_how
        if settings.host_pools and settings.host_names == "dns" and identity.name:
            named = host_pool(identity.name, request.client_ip or b"")
            if named is not None:  # a host pool before an SPF pool, as with tcpserver
                identity.pool, identity.spf_pooled = named, False
    if settings.greylist != "all":
        identity.suspicious, identity.why = suspicious(request, identity)
        if identity.helo and identity.helo[0]:
            identity.helo_name = host_name(request.helo)
    if "resolver" in request.__dict__:
        identity.queries = request.resolver.queries
    return identity


def suspicious(request, identity):
    """The verdict of GL_GREYLIST=suspicious -> (suspicious, why); fills
    identity (its name, dynamic, helo)."""
    name = identity.name
    if identity.spf is not None:
        from qgrey import spf
        if identity.spf.result in (spf.FAIL, spf.SOFTFAIL):
            return True, "spf " + identity.spf.result
    if name is not None:
        identity.dynamic = refusal(name, request.client_ip or b"")
        if identity.dynamic is None:
            return False, "name"
    identity.helo = helo_check(request)
    if identity.helo[0]:
        return False, "helo"
    if name is None:
        return True, "no verified name (%s)" % identity.how
    return True, "name: " + identity.dynamic
