"""Naming conventions of astronomical sources and events, as regular expressions.

One table, :data:`CONVENTIONS`, holds every convention astroray knows: its
regular expression (written to be used with :func:`re.fullmatch` on a name, and
inside :func:`find_designations` on running text), the entity type its names
get, and a line of description.  The text simulator
(:mod:`astroray.datasets.text`), the designation tokenizer and the rule-based
entity ruler (:mod:`astroray.text.pipeline`) and the regex-only baseline
(:mod:`astroray.text.evaluation`) all read this table.

Types:

* ``EVENT``: transients and events named by their time or by the survey that
  found them: TNS ``AT 2024abc``/``SN 2023ixf``, ZTF/ATLAS/Gaia/ASAS-SN/PS1/PTF
  alert names, ``GRB 221009A``, ``FRB 20180916B``, ``EP240315a``, LIGO/Virgo
  ``S190425z``/``GW170817``, ``IceCube-170922A``, microlensing events.
* ``SOURCE``: persistent sources: coordinate names (``Swift J1727.8-1613``,
  ``PSR J0437-4715``, ``4FGL J1653.8+3945``), catalogue numbers (``M87``,
  ``NGC 4993``, ``HD 189733``, ``3C 273``), old X-ray names (``GX 339-4``,
  ``4U 1630-47``, ``Cyg X-1``), variable stars (``V404 Cyg``, ``RS Oph``),
  ``Sgr A*``.

:func:`normalise_name` gives the canonical spelling of a name
(``"GRB221009A"`` -> ``"GRB 221009A"``, ``"SN2023ixf"`` -> ``"SN 2023ixf"``).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

__all__ = [
    "NAME_TYPES",
    "Convention",
    "CONVENTIONS",
    "CONSTELLATIONS",
    "Designation",
    "find_designations",
    "designation_regex",
    "convention_of",
    "normalise_name",
]

NAME_TYPES = ("SOURCE", "EVENT")
"""Entity types that are names of celestial things (scored together as "names")."""

CONSTELLATIONS = (
    "And", "Ant", "Aps", "Aqr", "Aql", "Ara", "Ari", "Aur", "Boo", "Cae", "Cam", "Cnc", "CVn", "CMa", "CMi", "Cap",
    "Car", "Cas", "Cen", "Cep", "Cet", "Cha", "Cir", "Col", "Com", "CrA", "CrB", "Crv", "Crt", "Cru", "Cyg", "Del",
    "Dor", "Dra", "Equ", "Eri", "For", "Gem", "Gru", "Her", "Hor", "Hya", "Hyi", "Ind", "Lac", "Leo", "LMi", "Lep",
    "Lib", "Lup", "Lyn", "Lyr", "Men", "Mic", "Mon", "Mus", "Nor", "Oct", "Oph", "Ori", "Pav", "Peg", "Per", "Phe",
    "Pic", "Psc", "PsA", "Pup", "Pyx", "Ret", "Sge", "Sgr", "Sco", "Scl", "Sct", "Ser", "Sex", "Tau", "Tel", "Tri",
    "TrA", "Tuc", "UMa", "UMi", "Vel", "Vir", "Vol", "Vul",
)
"""The IAU's three-letter constellation abbreviations (case matters: ``CVn``, ``UMa``)."""

_CONST = "(?:" + "|".join(sorted(CONSTELLATIONS, key=len, reverse=True)) + ")"
_SIGN = r"[+\-\u2212\u2013]"  # ASCII plus/minus, the Unicode minus and the en dash papers print
# J2000 coordinates: hhmm[ss[.s]] or hhmm.m, then +/-ddmm[ss[.s]] or dd[mm] or ddd (1/10 deg)
_JCOORD = r"J\d{4}(?:\d{1,4})?(?:\.\d{1,3})?" + _SIGN + r"\d{2,7}(?:\.\d{1,2})?"
_BCOORD = r"B?\d{4}(?:\.\d)?" + _SIGN + r"\d{2,4}(?:\.\d{1,2})?"
_GREEK = ("alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|omicron|pi|rho|sigma|tau|"
          "upsilon|phi|chi|psi|omega")
_GREEK_LETTERS = "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9\u03ba\u03bb\u03bc\u03bd\u03be\u03bf\u03c0" \
                 "\u03c1\u03c3\u03c4\u03c5\u03c6\u03c7\u03c8\u03c9"
# survey/mission prefixes written before J2000 coordinates
_JPREFIX = ("Swift", "MAXI", "XTE", "IGR", "4FGL", "3FGL", "2FGL", "1FGL", "4FHL", "3FHL", "2FHL", "4FGL-DR3",
            "4FGL-DR4", "PSR", "2MASS", "2MASX", "2MASSI", "2MASSW", "SDSS", "WISE", "WISEA", "WISEP", "WISEU",
            "CWISE", "1RXS", "2RXS", "RX", "CXOU", "CXO", "CXOGC", "XMMU", "XMMSL1", "XMMSL2", "4XMM", "3XMM",
            "2XMM", "SRGA", "SRGe", "SRG", "eRASSU", "eRASSt", "1eRASS", "AX", "SAX", "1SAX", "GRO", "Fermi",
            "EP", "PSO", "ULAS", "UGPS", "VVV", "DENIS", "GALEX", "NVSS", "FIRST", "VLASS", "GLEAM-X", "ASKAP",
            "VAST", "CHIME", "PKS", "TXS", "1LHAASO", "LHAASO", "3HWC", "HESS", "MAGIC", "VER", "SGR", "Gaia",
            "INTEGRAL", "NuSTAR", "Einstein Probe", "ASASSN-V", "ATO", "ZTF", "TIC", "LAMOST", "GRS", "EXO",
            "Suzaku", "MOXE", "HXMT", "Insight-HXMT", "SXP", "CRTS", "CSS", "MLS", "SSS")
# old X-ray, radio and AGN catalogues written as PREFIX hhmm+dd(d)
_BPREFIX = ("4U", "3U", "2U", "1A", "2A", "3A", "1H", "2S", "1E", "2E", "H", "GX", "GRS", "GRO", "EXO", "KS", "SLX",
            "1SAX", "AX", "GS", "1M", "XB", "PKS", "TXS", "1ES", "2ES", "PG", "PMN", "B2", "B3", "S4", "S5", "MG",
            "MG1", "MG2", "MG3", "MG4", "1RXS", "RX", "SAX", "Q", "QSO", "HE", "MS", "CTA", "AO", "OJ", "PSR",
            "SGR", "AXP", "CGRO")


@dataclass(frozen=True)
class Convention:
    """A naming convention.

    Attributes
    ----------
    name : str
        Short key, e.g. ``"grb"``.
    pattern : str
        Regular expression a name of this convention matches in full.
    label : str
        Entity type of its names (``"SOURCE"`` or ``"EVENT"``).
    description : str
        What it names, with an example.
    """

    name: str
    pattern: str
    label: str
    description: str


def _c(name, pattern, label, description):
    return Convention(name, pattern, label, description)


_TABLE = (
    # ------------------------------------------------------------- events and transients
    _c("tns", r"(?:AT|SN) ?(?:1[89]|20)\d{2}(?:[A-Z]|[a-z]{2,4})", "EVENT",
       "IAU/TNS transient: AT 2024abc, SN 2023ixf, SN2019B, SN 1987A, AT2024adip (four letters since 2024)"),
    _c("ztf", r"ZTF\d{2}[a-z]{7}", "EVENT", "ZTF alert object: ZTF23aaklqou"),
    _c("gaia", r"Gaia\d{2}[a-z]{2,3}", "EVENT", "Gaia Science Alert: Gaia19amg"),
    _c("atlas", r"ATLAS ?\d{2}[a-z]{3,4}", "EVENT", "ATLAS transient: ATLAS19abc"),
    _c("panstarrs", r"PS(?:1-| )?\d{2}[a-z]{2,4}", "EVENT", "Pan-STARRS transient: PS15cbt, PS1-13arp"),
    _c("asassn", r"ASAS-?SN-\d{2}[a-z]{2,3}", "EVENT", "ASAS-SN transient: ASASSN-14li"),
    _c("ptf", r"(?:PTF|iPTF) ?\d{2}[a-z]{2,3}", "EVENT", "(i)PTF transient: iPTF14hls, PTF11kly"),
    _c("master", r"MASTER ?OT ?" + _JCOORD, "EVENT", "MASTER optical transient: MASTER OT J123456.78+123456.7"),
    _c("transient_j", r"(?:MLT|TCP|PNV|DLT|GOTO|BGEM) ?" + _JCOORD, "EVENT",
       "transient survey coordinate name: MLT J080628.10-250116.4, TCP J17154683-3128303"),
    _c("microlensing", r"(?:OGLE|MOA|KMT|KMTNet)-\d{4}-(?:BLG|LMC|SMC|GD|DG)-\d{3,4}", "EVENT",
       "microlensing event: OGLE-2015-BLG-1234"),
    _c("grb", r"GRB ?\d{6}(?:\d{3}|\.\d{1,3}|[A-Za-z])?", "EVENT",
       "gamma-ray burst: GRB 221009A, GRB 970228, GRB 210531500 (Fermi)"),
    _c("xrf", r"XRF ?\d{6}[A-Z]?", "EVENT", "X-ray flash: XRF 020903"),
    _c("frb", r"FRB ?(?:\d{8}(?:[A-Z]{1,2}|[a-z]{2,3})?|\d{6}[A-Z]?(?:\.J\d{4}" + _SIGN + r"\d{2})?)", "EVENT",
       "fast radio burst: FRB 20180916B, FRB 121102"),
    _c("ep", r"EP ?\d{6}[a-zA-Z]", "EVENT", "Einstein Probe transient: EP240315a"),
    _c("gw", r"(?:S\d{6}[a-z]{1,3}|MS\d{6}[a-z]{1,3}|GW\d{6}(?:_\d{6})?|G\d{6})", "EVENT",
       "gravitational-wave candidate: S190425z, GW170817, GW190521_074359, G194575"),
    _c("icecube", r"(?:IceCube[- ]|IC-?)\d{6}[A-Z]", "EVENT", "IceCube neutrino alert: IceCube-170922A"),
    _c("km3net", r"KM3-\d{6}[A-Z]", "EVENT", "KM3NeT neutrino event: KM3-230213A"),
    _c("nova", r"Nova " + _CONST + r" \d{4}(?: No\. ?\d)?", "EVENT", "nova by constellation and year: Nova Sco 2014"),
    # ------------------------------------------------------------- coordinate names
    _c("swift", r"Swift ?" + _JCOORD, "SOURCE", "Swift source: Swift J1727.8-1613, Swift J1644+57"),
    _c("maxi", r"MAXI ?" + _JCOORD, "SOURCE", "MAXI source: MAXI J1820+070"),
    _c("xte", r"XTE ?" + _JCOORD, "SOURCE", "RXTE source: XTE J1550-564"),
    _c("igr", r"IGR ?" + _JCOORD, "SOURCE", "INTEGRAL source: IGR J17091-3624"),
    _c("4fgl", r"[1-4]F[GH]L(?:-DR[34])? ?" + _JCOORD + r"[ce]?", "SOURCE", "Fermi-LAT source: 4FGL J1653.8+3945"),
    _c("psr", r"PSR ?(?:" + _JCOORD + r"|B\d{4}" + _SIGN + r"\d{2}(?:\.\d)?)[A-Z]?", "SOURCE",
       "pulsar: PSR J0437-4715, PSR B1919+21"),
    _c("2mass", r"2MASS[IWX]? ?" + _JCOORD, "SOURCE", "2MASS source: 2MASS J12345678+1234567"),
    _c("sdss", r"SDSS ?" + _JCOORD, "SOURCE", "SDSS source: SDSS J123456.78+123456.7"),
    _c("sgr_mag", r"SGR ?(?:J?\d{4}(?:\.\d)?" + _SIGN + r"\d{2,4})", "SOURCE", "soft gamma repeater: SGR 1935+2154"),
    _c("jname", r"(?:" + "|".join(re.escape(p) for p in sorted(_JPREFIX, key=len, reverse=True)) + r") ?"
       + _JCOORD + r"[A-Za-z]?", "SOURCE", "mission/catalogue + J2000 coordinates: Fermi J0502.5+0037"),
    _c("jname_bare", _JCOORD, "SOURCE", "J2000 coordinates alone: J0100+2802"),
    _c("bname", r"(?:" + "|".join(re.escape(p) for p in sorted(_BPREFIX, key=len, reverse=True)) + r") ?"
       + _BCOORD, "SOURCE", "old X-ray, radio and AGN catalogues: GX 339-4, 4U 1630-47, PKS 2155-304, 1ES 1959+650"),
    _c("gx", r"GX ?\d{1,3}(?:\.\d)?" + _SIGN + r"\d{1,2}(?:\.\d)?", "SOURCE", "Galactic X-ray source: GX 339-4, GX 5-1"),
    _c("xray_const", r"(?:" + _CONST + r"|Vela) X" + _SIGN + r"\d{1,2}", "SOURCE",
       "X-ray source by constellation: Cyg X-1, Sco X-1, Vela X-1"),
    # ------------------------------------------------------------- catalogue numbers
    _c("messier", r"(?:M ?(?:110|10\d|[1-9]\d?)|Messier ?(?:110|10\d|[1-9]\d?))\*?", "SOURCE",
       "Messier object: M87, M 31, Messier 101, M87*"),
    _c("ngc", r"NGC ?\d{1,4}[A-Z]?", "SOURCE", "New General Catalogue: NGC 4993"),
    _c("ic", r"IC ?\d{1,4}[A-Z]?", "SOURCE", "Index Catalogue: IC 1101"),
    _c("galaxy_cat", r"(?:UGC ?\d{1,5}|UGCA ?\d{1,3}|PGC ?\d{1,7}|LEDA ?\d{1,7}|ESO ?\d{1,3}-[A-Z]{0,2}\d{1,3}|"
       r"MCG ?" + _SIGN + r"?\d{2}-\d{2}-\d{3}|Mrk ?\d{1,4}|Mkn ?\d{1,4}|Arp ?\d{1,3}|Abell ?S?\d{1,4}|ACO ?\d{1,4}|"
       r"DDO ?\d{1,3}|VCC ?\d{1,4}|Holmberg ?[IVX]{1,4}|Sh ?2-\d{1,3}|RCW ?\d{1,3}|LBN ?\d{1,4}|LDN ?\d{1,4}|"
       r"Ton ?\d{1,4}|PG ?\d{4}" + _SIGN + r"\d{3}|OJ ?\d{3}|3C ?\d{1,3}(?:\.\d)?|3CR ?\d{1,3}|4C ?"
       + _SIGN + r"\d{2}\.\d{2})", "SOURCE", "galaxy, nebula and radio catalogues: UGC 12158, Mrk 421, 3C 273, OJ 287"),
    _c("star_cat", r"(?:HD ?\d{1,6}|HIP ?\d{1,6}|HR ?\d{1,4}|HDE ?\d{1,6}|GJ ?\d{1,4}(?:\.\d)?|Gl ?\d{1,3}|"
       r"Gliese ?\d{1,4}|LHS ?\d{1,4}|Ross ?\d{1,4}|Wolf ?\d{1,4}|Feige ?\d{1,3}|TIC ?\d{4,10}|KIC ?\d{6,8}|"
       r"EPIC ?\d{9}|TOI-? ?\d{1,5}(?:\.\d{2})?|KOI-? ?\d{1,5}(?:\.\d{2})?|Kepler-\d{1,4}|K2-\d{1,4}|"
       r"WASP-\d{1,3}|HAT-P-\d{1,3}|HATS-\d{1,3}|XO-\d{1,2}|TrES-\d|CoRoT-\d{1,3}|Qatar-\d{1,2}|KELT-\d{1,2}|"
       r"TRAPPIST-1|BD ?" + _SIGN + r"\d{2} ?\d{1,5}|CD ?" + _SIGN + r"\d{2} ?\d{1,5}|"
       r"Gaia (?:DR[123]|EDR3) \d{6,19})(?:[A-C]|[b-h]| [b-h](?!\w))?", "SOURCE",
       "star and planet catalogues: HD 189733, GJ 1214, TOI-700, WASP-19b, Gaia DR3 4373465352415301632"),
    _c("variable_star", r"(?:V\d{3,4}|[R-Z]|[R-Z][R-Z]|A[A-Z]|B[B-Z]|C[C-Z]|D[D-Z]|E[E-Z]|F[F-Z]|G[G-Z]|H[H-Z]|"
       r"I[I-Z]|K[K-Z]|L[L-Z]|M[M-Z]|N[N-Z]|O[O-Z]|P[P-Z]|Q[Q-Z]) " + _CONST, "SOURCE",
       "GCVS variable star: V404 Cyg, RS Oph, T CrB, SS Cyg"),
    _c("bayer", r"(?:(?i:" + _GREEK + r")|[" + _GREEK_LETTERS + r"])(?: ?\d)? " + _CONST, "SOURCE",
       "Bayer designation: eta Car, alpha Cen, \u03b1 Ori"),
    _c("sgr_a", r"Sgr (?:A\*|A East|A West|B1|B2)", "SOURCE", "Galactic Centre sources: Sgr A*, Sgr B2"),
)

CONVENTIONS: dict[str, Convention] = {c.name: c for c in _TABLE}
"""Every naming convention by key, in the order they are tried (earlier wins a tie in length)."""

# A name never starts after a letter, digit, '.', '+', '-' (inside a longer token) and never
# stops before a letter/digit or before '+5', '-5', '.5' (inside a longer coordinate).
_BEFORE = r"(?<![\w.+\-\u2212\u2013])"
_AFTER = r"(?![\w*])(?![.+\-\u2212\u2013]\d)"
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)


@dataclass(frozen=True)
class Designation:
    """A name found by a convention: ``text[start:end]``, its type and convention."""

    start: int
    end: int
    text: str
    label: str
    convention: str


def designation_regex(conventions: Iterable[str] | None = None) -> re.Pattern:
    """One compiled regular expression finding names of ``conventions`` (default: all) in text.

    Each alternative is a group named ``c_<i>`` for the i-th convention; the
    expression has the same boundaries as :func:`find_designations` (which is
    faster: it scans once per convention for its literal prefix).
    """
    keys = _keys(conventions)
    body = "|".join(f"(?P<c_{i}>{CONVENTIONS[k].pattern})" for i, k in enumerate(keys))
    return re.compile(rf"{_BEFORE}(?:{body}){_AFTER}")


def _keys(conventions) -> tuple[str, ...]:
    keys = tuple(CONVENTIONS) if conventions is None else tuple(conventions)
    unknown = [k for k in keys if k not in CONVENTIONS]
    if unknown:
        raise KeyError(f"unknown naming convention(s) {unknown}; known: {sorted(CONVENTIONS)}")
    return keys


# Conventions whose names share a distinctive core are found through it: the core is
# scanned for once ("J1727" for coordinate names, a constellation abbreviation, "1630-47"),
# and the family's expressions run only on a short window around each hit.  A plain scan
# of an expression that starts with a long alternation ("Swift|MAXI|XTE|...") tries every
# alternative at every character and costs ~10x more.
_FAMILIES = (
    (re.compile(r"J\d{4}"), 28, 32,
     ("master", "transient_j", "swift", "maxi", "xte", "igr", "4fgl", "psr", "2mass", "sdss", "sgr_mag", "jname",
      "jname_bare")),
    # anchors start with a character class (no look-behind), which the engine skips to quickly;
    # what must come before the anchor is checked in Python (_anchor_ok)
    (re.compile(r"(?:[A-Z][A-Za-z]{2}|Vela)(?!\w)"), 14, 10, ("nova", "xray_const", "variable_star", "bayer")),
    (re.compile(r"[+\-\u2212\u2013](?=\d{2})"), 15, 10, ("psr", "sgr_mag", "bname")),
)
_CONSTELLATION_WORDS = frozenset(CONSTELLATIONS) | {"Vela"}


def _anchor_ok(index: int, text: str, hit: re.Match) -> bool:
    a = hit.start()
    if index == 1:  # a whole word that is a constellation
        return (a == 0 or not text[a - 1].isalnum()) and hit.group() in _CONSTELLATION_WORDS
    if index == 2:  # a sign after a digit, as in 1630-47
        return a > 0 and text[a - 1].isdigit()
    return True


@functools.lru_cache(maxsize=16)
def _scanners(keys: tuple[str, ...]):
    rank = {k: i for i, k in enumerate(keys)}
    in_family = {k for _, _, _, members in _FAMILIES for k in members}
    # one expression per convention: most start with a literal ("GRB", "NGC"), which the
    # regex engine finds by a fast scan; the boundary before the name is checked in Python
    direct = tuple((rank[k], k, re.compile(f"(?:{CONVENTIONS[k].pattern}){_AFTER}"))
                   for k in keys if k not in in_family)
    families = []
    for index, (anchor, back, ahead, members) in enumerate(_FAMILIES):
        members = [k for k in members if k in rank]
        if members:
            union = "|".join(f"(?P<c_{rank[k]}>{CONVENTIONS[k].pattern})" for k in members)
            families.append((index, anchor, back, ahead, re.compile(rf"{_BEFORE}(?:{union}){_AFTER}")))
    return direct, tuple(families)


@functools.lru_cache(maxsize=16)
def _fullmatchers(keys: tuple[str, ...]):
    return tuple((k, re.compile(CONVENTIONS[k].pattern)) for k in keys)


_NOT_BEFORE = frozenset("_.+-\u2212\u2013")


def find_designations(text: str, *, conventions: Iterable[str] | None = None) -> list[Designation]:
    """Every name in ``text`` that follows a naming convention, left to right, without overlaps.

    Where names overlap, the one starting first wins, then the longer one,
    then the earlier convention in :data:`CONVENTIONS`.  Matches inside URLs
    and e-mail addresses are skipped.

    Parameters
    ----------
    text : str
    conventions : iterable of str, optional
        Keys of :data:`CONVENTIONS` to use; all by default.

    Returns
    -------
    list of Designation
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    keys = _keys(conventions)
    direct, families = _scanners(keys)
    candidates = set()
    for rank, _, regex in direct:
        pos = 0
        while True:
            m = regex.search(text, pos)
            if m is None:
                break
            start = m.start()
            if start and (text[start - 1].isalnum() or text[start - 1] in _NOT_BEFORE):
                pos = start + 1  # inside a longer word: try again one character on
                continue
            candidates.add((start, start - m.end(), rank))
            pos = m.end()
    for index, anchor, back, ahead, regex in families:
        for hit in anchor.finditer(text):
            if not _anchor_ok(index, text, hit):
                continue
            a, b = hit.span()
            lo = max(0, a - back)
            for m in regex.finditer(text, lo, min(len(text), b + ahead)):
                if m.start() <= a and m.end() >= b:
                    # a name ending at the window's edge may go on: take its full length
                    rank = int(m.lastgroup[2:])
                    full = _scanners_full(keys)[rank].match(text, m.start())
                    if full is not None:
                        candidates.add((m.start(), m.start() - full.end(), rank))
    if not candidates:
        return []
    urls = _protected_spans(text)
    found: list[Designation] = []
    last_end = -1
    for start, neg_len, rank in sorted(candidates):
        end = start - neg_len
        if start < last_end or any(a < end and start < b for a, b in urls):
            continue
        key = keys[rank]
        found.append(Designation(start, end, text[start:end], CONVENTIONS[key].label, key))
        last_end = end
    return found


def _protected_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of URLs and e-mail addresses (names inside them are not names)."""
    spans = [m.span() for m in _URL.finditer(text)] if ("//" in text or "www." in text) else []
    at = text.find("@")
    while at != -1:
        start, end = at, at + 1
        while start > 0 and not text[start - 1].isspace() and text[start - 1] not in "<(\"'":
            start -= 1
        while end < len(text) and not text[end].isspace() and text[end] not in ">)\"'":
            end += 1
        spans.append((start, end))
        at = text.find("@", end)
    return spans


@functools.lru_cache(maxsize=16)
def _scanners_full(keys: tuple[str, ...]):
    return tuple(re.compile(f"(?:{CONVENTIONS[k].pattern}){_AFTER}") for k in keys)


def convention_of(name: str) -> str | None:
    """The key of the first convention ``name`` follows in full, or None."""
    name = _clean(name)
    for key, full in _fullmatchers(tuple(CONVENTIONS)):
        if full.fullmatch(name):
            return key
    return None


def _clean(name: str) -> str:
    name = re.sub(r"\s+", " ", name.strip())
    return name.replace("\u2212", "-").replace("\u2013", "-")


# convention -> (prefix as written canonically, separator after it)
_SPACED = {"tns": ("", " "), "grb": ("GRB", " "), "xrf": ("XRF", " "), "frb": ("FRB", " "), "ngc": ("NGC", " "),
           "ic": ("IC", " "), "gx": ("GX", " ")}
_PREFIX_SPACE = re.compile(r"^(Swift|MAXI|XTE|IGR|PSR|2MASS|SDSS|SGR|MASTER OT|MLT|TCP|[1-4]F[GH]L)(?=J\d)")


def normalise_name(name: str) -> str:
    """The canonical spelling of a name.

    * one space between a catalogue prefix and its number:
      ``GRB221009A`` -> ``GRB 221009A``, ``SN2023ixf`` -> ``SN 2023ixf``,
      ``NGC4993`` -> ``NGC 4993``, ``FRB20180916B`` -> ``FRB 20180916B``,
      ``SwiftJ1727.8-1613`` -> ``Swift J1727.8-1613``;
    * no space where the convention has none: ``EP 240414a`` -> ``EP240414a``
      (lower-case letter), ``M 87`` / ``Messier 87`` -> ``M87``,
      ``IceCube 170922A`` -> ``IceCube-170922A``;
    * the Unicode minus and en dash become ``-``; runs of white space one space;
      a leading "the " goes (``the Crab Nebula`` -> ``Crab Nebula``).

    Names of no convention come back with only the last rule applied.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    text = _clean(name)
    if text[:4].lower() == "the ":
        text = text[4:]
    key = convention_of(text)
    if key is None:
        return text
    if key == "tns":
        return re.sub(r"^(AT|SN) ?", r"\1 ", text)
    if key in _SPACED:
        prefix = _SPACED[key][0]
        return re.sub(rf"^{prefix} ?", prefix + " ", text)
    if key == "ep":
        return "EP" + text[2:].strip()[:-1] + text[-1].lower()
    if key == "messier":
        return "M" + re.sub(r"^(?:Messier|M) ?", "", text)
    if key == "icecube":
        return "IceCube-" + re.sub(r"^(?:IceCube[- ]|IC-?)", "", text)
    if key in ("atlas", "ptf"):
        return re.sub(r" ", "", text)
    return _PREFIX_SPACE.sub(r"\1 ", text)
