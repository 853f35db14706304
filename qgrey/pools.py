"""Host pools (GL_HOST_POOLS): one client for all sending hosts of a provider.

Large providers retry a message from another address, often in another /24
and over IPv4 or IPv6 by turns, so keyed by network they are greylisted
again on every attempt. Their hosts' forward-confirmed names
(TCPREMOTEHOST, tcpserver -h -p) share a *pool*, the part of the name that
all of them have in common:

    mail-ed1-f41.google.com                              -> google.com
    mail-wr1-x42f.google.com (IPv6)                      -> google.com
    mail-am6eur05on2083.outbound.protection.outlook.com  -> outbound.protection.outlook.com
    sonic314-20.consmr.mail.ne1.yahoo.com                -> consmr.mail.yahoo.com
    a27-18.smtp-out.us-west-2.amazonses.com              -> smtp-out.amazonses.com
    mx-out1.provider.co.uk                               -> provider.co.uk

pool(name, ip_text) returns that pool (lower-case str of a-z 0-9 '-' '.',
safe in a key as it is), or None when the client must stay keyed by its
network. Names of dynamic and residential ranges are never pooled: bots on
one ISP's range must not pass on each other's attempts, and the
auto-whitelist must never take in a whole customer range. Not pooling
costs a single-address sender nothing (its network key is as stable as a
name), so every doubt gives None.

The rule, in order:

1. The name must be a plausible host name: ASCII letters, digits, '-' and
   '.', one trailing dot allowed, case ignored, at most 253 bytes, labels
   of 1 to 63 bytes that neither start nor end with '-', a top-level label
   that is alphabetic (or IDN 'xn--') and not a reserved or local one
   (arpa, local, internal, test, ...). So IP literals, garbage and
   non-ASCII bytes give None. ip_text must be a valid IPv4 or IPv6 address
   (IPv4-mapped IPv6 counts as IPv4), otherwise None: the checks below
   need it.

2. The registered domain is the public suffix plus one label. The suffix
   is one label (com, de) or two (co.uk, com.au, co.jp; table SUFFIXES),
   in places three (sch.uk: any; prefecture.jp; nsw.edu.au; sp.gov.br;
   k12.ca.us). Under a country code that has second-level suffixes
   (anything not in FLAT_CCTLDS) the second label is *always* taken as
   part of the suffix, listed or not: a name under an unknown suffix then
   loses one label of pooling (smtp.example.jp -> None) but a pool is
   never a public suffix. Under the flat country codes (de, fr, nl, ...) a
   second label is part of the suffix when listed, when it is a generic
   second-level word (co, com, gov, ...; SLD_WORDS) or when it has one or
   two letters (on.ca, a.se); under generic TLDs only when listed (us.com).

3. The host part is what is left of the registered domain; a bare
   registered domain (example.com) or a name under a suffix (mail.co.uk)
   has none and gives None.

4. The name is refused (None) when
   - a host label holds one of the generic words of end-user, dynamic,
     access or rented ranges (table GENERIC_WORDS: dsl, dyn, dhcp, pool,
     ppp, cable, cust, static, vps, unknown, ...), as an alphabetic run of
     its own: 'pool' in pool-71-1-2-3 but not in liverpool; 'ip', 'host'
     and a few others only at the start of a label that has digits
     (ip-203-0-113-45, host86-150-1-2, but not mail-ip1-f41), 'bb' only at
     the start of a label (bb121-6-1-2). Words in the registered domain
     itself are not looked at (mobile.de, home.pl are companies);
   - the registered domain, or a listed zone of it, is one whose names are
     end users by definition (tables DENIED_DOMAINS and DENIED_ZONES:
     access networks whose names the words may miss, cloud instances named
     by their customers, dynamic-DNS services);
   - the name embeds the client's own address. IPv4: three octets in a row
     in either order, as decimal runs with any of '-' '.' between them
     (203-0-113-45, 45.113.0.203, c-73-22-1-5, ec2-54-1-2-3) or
     zero-padded in one run (host203000113045, n219077212045); three bytes
     in hex, either order (cb00712d, p5b0c1a2b, cb007109); the whole
     address as one integer, or as digits unpadded when that makes 7 or
     more; two octets when they are the last two in reverse order (45-113,
     in-addr style) or the last two in order forming a label of digits
     alone (113-45). IPv6: three groups in a row as hex parts, either order
     (2001-db8-1-2), three or more groups zero-padded in one run
     (p200300e1a2b3...), or twelve or more nibbles reversed (ip6.arpa
     style); always with at least two non-zero groups;
   - the name holds any IPv4 address (four runs of at most three digits,
     each 0-255, joined by '-' or '.', or a 12-digit run of four such
     octets), the client's or not: such a name is a generated one.

5. The pool is the registered domain preceded by the host labels except
   the leftmost (which names the host) and except every label that holds
   a digit (numbered hosts, clusters, data centres, regions):
   sonic314-20.consmr.mail.ne1.yahoo.com -> consmr.mail.yahoo.com,
   4.mo1.mail-out.ovh.net -> mail-out.ovh.net. Names of one provider thus
   meet in one pool whatever host, cluster or region sent them, and the
   provider's other zones (hosting.ovh.net) stay pools of their own. So a
   pool is not always a suffix of the name, but always its registered
   domain preceded by some of its labels in their order.

Decided consciously:
- Bulk senders number hosts after the last two octets with a letter in
  front (a8-23.smtp-out.amazonses.com for 54.240.8.23, so254-55.mailgun.net,
  mail187-13.suw21.mandrillapp.com). Two octets in order after a letter
  are taken as host digits, not as the address: the name is pooled. A
  residential name always carries more (the whole address, three octets,
  or a generic word), since two octets are unique only within a /16.
- Facebook's mail hosts (66-220-155-178.mail-mail.facebook.com) embed
  their whole address: keyed by network, like every such name.
- Under non-flat country codes a direct registration loses its pooling
  for one-label hosts (sender2-of-o52.zoho.in -> None, but
  mx1.mail.example.jp -> mail.example.jp).
- A public suffix deeper than the tables know (pvt.k12.ma.us, the city
  zones of jp beyond the wildcard cities) can come out as a pool of a
  name directly under it; it is then a zone shared by organisations, never
  an end-user range.
- Servers named after their provider and not their customer
  (cluster021.hosting.ovh.net, server123.hoster.example) pool per zone.
  Greylisting stops bots that send straight to the MX, and those live on
  the ranges refused above; a hosting server's MTA retries and passes
  greylisting anyway, with or without a pool.
- A short word at the start of a label ('bb', 'ip', 'cm', 'vm') also
  refuses the odd provider's host that happens to be named so (bb1.mx.
  example.com); that host is then keyed by its network, nothing worse.

API: pool(name, ip_text) -> str or None; refusal(name, ip_text) -> why
the rule refuses the name (steps 1 and 4), or None. The tables (GENERIC_WORDS,
DENIED_DOMAINS, DENIED_ZONES, FLAT_CCTLDS, SLD_WORDS, SUFFIXES,
DEEP_SUFFIXES, US_DEEP, JP_DEEP, RESERVED_TLDS) are module constants.
Pure: only qgrey.keys (for its address parsers) is imported. A call costs
a few microseconds; the tables are built once at import.
"""
from qgrey.keys import parse_ipv4, parse_ipv6

# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

# Generic words of end-user, dynamic, access and rented ranges, as they are
# matched in the host part (never in the registered domain):
#   any     an alphabetic run of its own anywhere in a host label
#   lead    an alphabetic run at the start of a label
#   digits  an alphabetic run at the start of a label that also has a digit
GENERIC_WORDS = (
    ("any", b"dsl adsl vdsl xdsl sdsl hdsl tdsl dslb dslam", "DSL lines"),
    ("any", b"dyn dynamic dynamicip dynip dyndns dhcp dinamic dinamico dinamica dynamique",
     "dynamic addresses"),
    ("any", b"pool pools ppp pppoe pppoa dial dialup dialin dip isdn modem",
     "dial-up and address pools (dip: Telekom's dial-in pools)"),
    ("any", b"bras bng lns ipoe ipngn hsd hsi",
     "access concentrators and services (ipngn: OCN; hsd: Comcast's high-speed data)"),
    ("any", b"cable catv kabel cablemodem docsis hfc", "cable networks"),
    ("any", b"fiber fibre ftth fttb fttc fttp fttx fttn fios gpon", "fibre to the home"),
    ("any", b"broadband bband", "broadband"),
    ("lead", b"bb", "broadband (bb121-6-1-2)"),
    ("any", b"customer customers cust client clients user users subscriber subscribers "
            b"abo abonne kunde kunden cliente clientes", "customer lines"),
    ("any", b"residential resi res home", "residential lines"),
    ("any", b"mobile mobil mob cell cellular gprs umts lte gsm wap", "mobile networks"),
    ("any", b"wireless wless wifi wlan wimax hotspot", "wireless networks"),
    ("any", b"static staticip", "static customer addresses"),
    ("any", b"cpe", "customer premises equipment"),
    ("any", b"nat cgnat cgn vpn proxy", "shared exits"),
    ("any", b"vps vds vserver dedicated colo instance compute members",
     "rented servers and cloud instances (members: Linode)"),
    ("any", b"unknown unassigned unallocated unused undefined unnamed noname noptr norev "
            b"nodns nxdomain generic reverse rev rdns arpa addr", "placeholder names"),
    ("digits", b"ip host cm vm ras", "generated names (ip-203-0-113-45, host86-150-1-2)"),
)

# Registered domains whose host names are end users by definition: access
# networks whose names the generic words may miss, cloud instances named
# by their customers, dynamic-DNS services. DENIED_ZONES: zones of other
# registered domains, the same.
DENIED_DOMAINS = frozenset(
    # access networks
    b"t-ipconnect.de t-dialin.net versanet.de vodafone-ip.de wanadoo.fr "
    b"btcentralplus.com virginm.net netvigator.com bbtec.net ocn.ne.jp au-net.ne.jp "
    b"sbcglobal.net verizon.net shawcable.net bigpond.net.au 163data.com.cn "
    # cloud instances and rented servers
    b"amazonaws.com googleusercontent.com cloudapp.net your-server.de contaboserver.net "
    b"linodeusercontent.com vultrusercontent.com poneytelecom.eu scw.cloud "
    # dynamic DNS
    b"dyndns.org dyndns.info dyndns.biz no-ip.com no-ip.org no-ip.biz no-ip.info ddns.net "
    b"duckdns.org dynu.com dynu.net hopto.org zapto.org sytes.net myftp.org myftp.biz "
    b"serveftp.com servebeer.com dnsalias.com dnsalias.net dnsalias.org homeip.net "
    b"homelinux.com homelinux.net homelinux.org afraid.org dynv6.net freeddns.org "
    b"changeip.com".split())
DENIED_ZONES = {b"azure.com": (b".cloudapp.azure.com",)}

# Country codes whose registrations are (almost) all directly at the
# second level; under the others an unlisted second label is taken as a
# public suffix all the same.
FLAT_CCTLDS = frozenset(
    b"de nl be ch li at dk se fi cz sk si ee lv lt lu ie is pt es fr eu io me tv cc ws co "
    b"ai ca gr hr rs ro bg md am ge mk ba al fm to ly gg je im la sh ac nu tk ml ga cf gq "
    b"gl vc ag bz cx".split())

# Second labels taken as a public suffix under any country code.
SLD_WORDS = frozenset(
    b"ac co com net org edu gov gob gouv govt gv mil nic int or ne go nom ltd plc sch info "
    b"biz firm gen tm pp".split())

# Common two-label public suffixes. Under non-flat country codes they only
# document (every second label is a suffix there); under flat ones and
# generic TLDs they are the suffixes known.
SUFFIXES = frozenset(
    # United Kingdom
    b"co.uk org.uk ac.uk gov.uk ltd.uk plc.uk me.uk net.uk sch.uk nhs.uk police.uk mod.uk "
    b"nic.uk "
    # Australia, New Zealand
    b"com.au net.au org.au edu.au gov.au asn.au id.au csiro.au "
    b"co.nz net.nz org.nz ac.nz govt.nz school.nz geek.nz gen.nz kiwi.nz maori.nz iwi.nz "
    b"mil.nz health.nz cri.nz "
    # Japan
    b"co.jp ne.jp or.jp ac.jp ad.jp ed.jp go.jp gr.jp lg.jp "
    # Latin America
    b"com.br net.br org.br gov.br edu.br mil.br art.br blog.br eco.br emp.br eng.br ind.br "
    b"inf.br jus.br leg.br med.br nom.br psi.br rec.br srv.br tmp.br tur.br tv.br adv.br "
    b"com.ar net.ar org.ar gov.ar edu.ar int.ar mil.ar tur.ar "
    b"com.mx net.mx org.mx edu.mx gob.mx com.co net.co org.co edu.co gov.co nom.co web.co "
    b"arts.co firm.co info.co rec.co "
    b"com.pe net.pe org.pe edu.pe gob.pe nom.pe com.ve net.ve org.ve gob.ve "
    b"com.uy net.uy org.uy edu.uy gub.uy com.ec net.ec org.ec edu.ec gob.ec "
    # Asia
    b"com.cn net.cn org.cn gov.cn edu.cn ac.cn mil.cn "
    b"co.kr ne.kr or.kr re.kr pe.kr go.kr mil.kr ac.kr "
    b"co.in net.in org.in firm.in gen.in ind.in ac.in edu.in res.in gov.in mil.in nic.in "
    b"com.tw net.tw org.tw edu.tw gov.tw idv.tw com.hk net.hk org.hk edu.hk gov.hk idv.hk "
    b"com.sg net.sg org.sg edu.sg gov.sg per.sg com.my net.my org.my edu.my gov.my name.my "
    b"co.id ac.id or.id net.id go.id web.id sch.id co.th ac.th or.th net.th go.th in.th "
    b"com.vn net.vn org.vn edu.vn gov.vn com.ph net.ph org.ph edu.ph gov.ph "
    b"com.pk net.pk org.pk edu.pk gov.pk com.bd net.bd org.bd "
    b"co.il org.il net.il ac.il gov.il muni.il k12.il com.tr net.tr org.tr gen.tr biz.tr "
    b"edu.tr gov.tr k12.tr bel.tr av.tr dr.tr com.sa net.sa org.sa edu.sa gov.sa "
    b"co.ae net.ae org.ae ac.ae gov.ae com.qa com.kw com.lb com.jo "
    # Africa
    b"co.za org.za net.za gov.za ac.za edu.za web.za com.eg edu.eg gov.eg com.ng edu.ng "
    b"gov.ng co.ke or.ke ac.ke go.ke co.tz co.ug com.gh co.ma "
    # Europe
    b"com.ru net.ru org.ru pp.ru msk.ru spb.ru ac.ru edu.ru gov.ru int.ru mil.ru "
    b"com.ua net.ua org.ua edu.ua gov.ua in.ua kiev.ua kyiv.ua "
    b"com.pl net.pl org.pl edu.pl gov.pl waw.pl biz.pl info.pl "
    b"gov.it edu.it co.hu org.hu com.gr net.gr org.gr edu.gr gov.gr com.cy ac.cy "
    b"com.mt com.es nom.es org.es gob.es edu.es com.pt edu.pt gov.pt org.pt nome.pt publ.pt "
    b"asso.fr com.fr gouv.fr nom.fr prd.fr tm.fr presse.fr aeroport.fr avocat.fr cci.fr "
    b"greta.fr medecin.fr notaires.fr pharmacien.fr port.fr veterinaire.fr "
    b"ac.at co.at gv.at or.at ac.be ac.rs co.rs org.rs edu.rs gov.rs in.rs "
    b"com.ro org.ro tm.ro nt.ro nom.ro www.ro arts.ro firm.ro info.ro rec.ro store.ro "
    b"com.hr from.hr iz.hr name.hr parti.se press.se tm.se org.se pp.se brand.se "
    b"aland.fi iki.fi asn.lv conf.lv riik.ee pri.ee fie.ee lib.ee aip.ee inf.mk pvt.ge "
    b"commune.am its.me priv.me name.mk "
    # second-level zones sold as suffixes under generic TLDs
    b"us.com uk.com eu.com gb.com de.com br.com cn.com jpn.com ru.com sa.com za.com kr.com "
    b"gb.net uk.net se.net hu.net in.net za.net eu.org us.org za.org ae.org".split())

# Three-label suffixes: under these two-label suffixes the third label from
# the right is a suffix too: True for any label, or the labels listed.
_AU_STATES = frozenset(b"act nsw nt qld sa tas vic wa".split())
DEEP_SUFFIXES = {
    b"sch.uk": True,
    b"edu.au": _AU_STATES,
    b"gov.au": _AU_STATES,
    b"gov.br": frozenset(b"ac al am ap ba ce df es go ma mg ms mt pa pb pe pi pr rj rn ro "
                         b"rr rs sc se sp to".split()),
}
# Under us: STATE.us, and k12.STATE.us etc.; under jp: PREFECTURE.jp and
# the cities with zones of their own.
US_DEEP = frozenset(b"k12 cc lib cog dst gen mus tec pvt".split())
JP_DEEP = frozenset(
    b"aichi akita aomori chiba ehime fukui fukuoka fukushima gifu gunma hiroshima hokkaido "
    b"hyogo ibaraki ishikawa iwate kagawa kagoshima kanagawa kochi kumamoto kyoto mie "
    b"miyagi miyazaki nagano nagasaki nara niigata oita okayama okinawa osaka saga saitama "
    b"shiga shimane shizuoka tochigi tokushima tokyo tottori toyama wakayama yamagata "
    b"yamaguchi yamanashi "
    b"kawasaki kitakyushu kobe nagoya sapporo sendai yokohama".split())

RESERVED_TLDS = frozenset(
    b"arpa local localdomain localhost lan home corp internal intranet private invalid test "
    b"example onion alt".split())

_ANYWHERE = frozenset(b" ".join(w for where, w, _ in GENERIC_WORDS if where == "any").split())
_LEAD = frozenset(b" ".join(w for where, w, _ in GENERIC_WORDS if where == "lead").split())
_LEAD_DIGITS = frozenset(b" ".join(w for where, w, _ in GENERIC_WORDS
                                   if where == "digits").split())
_AT_START = _LEAD | _LEAD_DIGITS

_LETTERS = b"abcdefghijklmnopqrstuvwxyz"
_LDH = _LETTERS + b"0123456789-."
_ALL = bytes(range(256))


def _blank_all_but(keep):
    other = _ALL.translate(None, keep)
    return bytes.maketrans(other, b" " * len(other))


_ALPHA_RUNS = _blank_all_but(_LETTERS)               # non-letters -> ' '
_SKELETON = _blank_all_but(b"0123456789-.")          # letters -> ' '
_DIGIT_RUNS = _blank_all_but(b"0123456789")          # non-digits -> ' '
_SHAPE = _SKELETON.translate(bytes.maketrans(b"123456789.", b"000000000-"))
_PARTS = _blank_all_but(_LETTERS + b"0123456789")    # '-' '.' -> ' '
_HEX = frozenset(b"0123456789abcdef")
_HEX_SHAPE = _blank_all_but(b"0123456789abcdef").translate(
    bytes.maketrans(b"0123456789abcdef", b"x" * 16))  # hex digits -> 'x'


# ---------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------

def pool(name, ip_text):
    """TCPREMOTEHOST and TCPREMOTEIP (bytes or str) -> the pool (str) the
    client belongs to, or None when it must be keyed by its network."""
    parsed = _judge(name, ip_text)
    if isinstance(parsed, str):
        return None
    labels, hosts, registered = parsed
    if hosts < 1:  # a bare registered domain, or a name under a suffix
        return None
    # 5. the pool
    kept = [label for label in labels[1:hosts] if label.replace(b"-", b"").isalpha()]
    if kept:
        kept.append(registered)
        return b".".join(kept).decode("ascii")
    return registered.decode("ascii")


def refusal(name, ip_text):
    """Why the dynamic-name rule (steps 1 and 4 above) refuses this host
    name for this client, or None when the name may be a server's:
    'not a host name', 'generic word', 'denied domain' or 'address in name'.
    Unlike pool(), a bare registered domain (example.com) is a host name
    here: a server may be named so (GL_GREYLIST=suspicious)."""
    parsed = _judge(name, ip_text)
    return parsed if isinstance(parsed, str) else None


def _judge(name, ip_text):
    """-> the reason of a refusal (str), or (labels, number of host labels,
    registered domain) of an acceptable name."""
    try:
        if isinstance(name, str):
            name = name.encode("ascii")
        elif not isinstance(name, bytes):
            name = bytes(name)
        if isinstance(ip_text, str):
            ip_text = ip_text.encode("ascii")
        elif not isinstance(ip_text, bytes):
            ip_text = bytes(ip_text)
    except (UnicodeError, TypeError, ValueError):
        return NOT_A_HOST

    # 1. a plausible host name
    name = name.lower()
    if name[-1:] == b".":
        name = name[:-1]
    if not 4 <= len(name) <= 253 or name.translate(None, _LDH):
        return NOT_A_HOST
    if name[:1] in b".-" or name[-1:] == b"-" or b".." in name or b".-" in name \
            or b"-." in name:
        return NOT_A_HOST
    labels = name.split(b".")
    count = len(labels)
    if count < 2 or max(map(len, labels)) > 63:
        return NOT_A_HOST
    tld = labels[-1]
    if not (tld.isalpha() or tld[:4] == b"xn--") or len(tld) < 2 or tld in RESERVED_TLDS:
        return NOT_A_HOST

    # 2. the public suffix
    second = labels[-2]
    suffix2 = second + b"." + tld
    if suffix2 in SUFFIXES:
        size = 2
    elif len(tld) == 2:
        size = 1 if tld in FLAT_CCTLDS and len(second) > 2 and second not in SLD_WORDS else 2
    else:
        size = 1
    if size == 2 and count > 2:
        if tld == b"us":
            size += labels[-3] in US_DEEP
        elif tld == b"jp":
            size += second in JP_DEEP
        else:
            deep = DEEP_SUFFIXES.get(suffix2)
            if deep is True or (deep is not None and labels[-3] in deep):
                size = 3

    # 3. the host part (none: a bare registered domain or a public suffix)
    hosts = max(0, count - size - 1)
    registered = b".".join(labels[hosts:])
    host = name[:len(name) - len(registered) - 1] if hosts else b""

    # 4. refusals: generic words, denied domains, the address in the name
    words = host.translate(_ALPHA_RUNS).split()
    if not _ANYWHERE.isdisjoint(words):
        return GENERIC
    if not _AT_START.isdisjoint(words) and _generic_at_start(labels[:hosts]):
        return GENERIC
    if registered in DENIED_DOMAINS:
        return DENIED
    zones = DENIED_ZONES.get(registered)
    if zones is not None:
        dotted = b"." + name
        for zone in zones:
            if dotted.endswith(zone):
                return DENIED
    address = _address(ip_text)
    if address is None:
        return NOT_A_HOST
    if _embeds(name, address):
        return EMBEDS
    return labels, hosts, registered


NOT_A_HOST, GENERIC, DENIED, EMBEDS = "not a host name", "generic word", "denied domain", \
    "address in name"


def _generic_at_start(labels):
    """A 'lead' word at the start of a label, or a 'digits' word there in a
    label with a digit."""
    for label in labels:
        if label[:1].isalpha():
            lead = label.translate(_ALPHA_RUNS).split(None, 1)[0]
            if lead in _LEAD:
                return True
            if lead in _LEAD_DIGITS and not label.replace(b"-", b"").isalpha():
                return True
    return False


def _address(ip_text):
    """-> (4, value) or (6, value), or None."""
    text = ip_text.strip()
    if b":" in text:
        value = parse_ipv6(text)
        if value is None:
            return None
        if value >> 32 == 0xFFFF:
            return 4, value & 0xFFFFFFFF
        return 6, value
    value = parse_ipv4(text)
    return None if value is None else (4, value)


def _embeds(name, address):
    """Whether the name embeds the client's address (or any IPv4 address)."""
    version, value = address
    # digits -> '0', '-' and '.' -> '-', letters -> ' ': the gates below
    # skip the work a name without such digits does not need
    shape = name.translate(_SHAPE)
    if b"0-0" in shape and _digit_sequences(name, version, value):
        return True
    if b"000000000000" in shape and _twelve_digit_address(name):
        return True
    if version == 6:
        return _embeds_ipv6(name, value)
    o1, o2, o3, o4 = value >> 24, value >> 16 & 255, value >> 8 & 255, value & 255
    if b"0000000" in shape:  # a run of 7 digits or more
        if b"%d" % value in name:
            return True
        plain = b"%d%d%d%d" % (o1, o2, o3, o4)
        if len(plain) >= 7 and (plain in name or b"%d%d%d%d" % (o4, o3, o2, o1) in name):
            return True
        if b"000000000" in shape:
            padded = b"%03d%03d%03d%03d" % (o1, o2, o3, o4)
            reverse = b"%03d%03d%03d%03d" % (o4, o3, o2, o1)
            if padded[:9] in name or padded[3:] in name or reverse[:9] in name \
                    or reverse[3:] in name:
                return True
    if b"xxxxxx" not in name.translate(_HEX_SHAPE):  # no 6 hex digits in a row
        return False
    hexed = b"%08x" % value
    reverse = b"%02x%02x%02x%02x" % (o4, o3, o2, o1)
    return hexed[:6] in name or hexed[2:] in name or reverse[:6] in name \
        or reverse[2:] in name


def _digit_sequences(name, version, value):
    """Decimal runs joined by '-' or '.': three octets of the client in
    either order, its last two reversed, its last two in order as a label of
    digits alone, or any four octets."""
    if version == 4:
        o1, o2, o3, o4 = value >> 24, value >> 16 & 255, value >> 8 & 255, value & 255
        triples = ((o1, o2, o3), (o2, o3, o4), (o4, o3, o2), (o3, o2, o1))
        backwards = (o4, o3)
        forwards = (o3, o4)
    else:
        triples = backwards = forwards = ()
    for chunk in name.translate(_SKELETON).split():
        if len(chunk) < 3:
            continue
        runs = chunk.replace(b".", b"-").split(b"-")
        numbers = [int(run) if len(run) <= 3 else -1 for run in runs if run]
        for i in range(len(numbers) - 1):
            pair = (numbers[i], numbers[i + 1])
            if pair == backwards:
                return True
            if i + 2 < len(numbers) and pair + (numbers[i + 2],) in triples:
                return True
            if i + 3 < len(numbers) and 0 <= min(numbers[i:i + 4]) \
                    and max(numbers[i:i + 4]) <= 255:
                return True  # any IPv4 address, written out
            if pair == forwards and _digit_label_pair(name, forwards):
                return True
    return False


def _digit_label_pair(name, pair):
    """Whether a label of digits and '-' alone holds the pair in order (113-45)."""
    for label in name.split(b"."):
        if label and not label.translate(None, b"0123456789-"):
            runs = [int(run) for run in label.split(b"-") if run]
            for i in range(len(runs) - 1):
                if (runs[i], runs[i + 1]) == pair:
                    return True
    return False


def _twelve_digit_address(name):
    """A run of 12 digits that reads as four octets (n219077212045)."""
    for run in name.translate(_DIGIT_RUNS).split():
        for start in range(len(run) - 11):
            digits = run[start:start + 12]
            if all(int(digits[i:i + 3]) <= 255 for i in (0, 3, 6, 9)):
                return True
    return False


def _embeds_ipv6(name, value):
    """Three groups in a row as hex parts, either order; three or more
    zero-padded in one part; the nibbles reversed. Always at least two of
    the groups non-zero."""
    parts = name.translate(_PARTS).split()
    if name.count(b".") >= 12 and _nibbles(parts, value):
        return True
    numbers = []
    in_row = 0
    row_of_three = padded = False
    for part in parts:
        if len(part) <= 4 and _HEX.issuperset(part):
            numbers.append(int(part, 16))
            in_row += 1
            row_of_three = row_of_three or in_row >= 3
        else:
            numbers.append(-1)
            in_row = 0
            padded = padded or len(part) >= 12
    if not (row_of_three or padded):
        return False
    groups = [value >> (112 - 16 * i) & 0xFFFF for i in range(8)]
    full = b"%032x" % value
    triples = set()
    for i in range(6):
        triple = tuple(groups[i:i + 3])
        if (triple[0] != 0) + (triple[1] != 0) + (triple[2] != 0) >= 2:
            if padded and full[4 * i:4 * i + 12] in name:
                return True
            triples.add(triple)
            triples.add(triple[::-1])
    if row_of_three:
        for i in range(len(numbers) - 2):
            if (numbers[i], numbers[i + 1], numbers[i + 2]) in triples:
                return True
    return False


def _nibbles(parts, value):
    """ip6.arpa style: twelve or more single hex digits, least significant
    first."""
    nibbles = b"".join(part for part in parts if len(part) == 1 and part[0] in _HEX)
    return len(nibbles) >= 12 and nibbles[::-1] in b"%032x" % value
