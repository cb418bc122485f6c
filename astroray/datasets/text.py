"""Simulated astronomy text: ATel-like reports and abstract-like paragraphs with entity spans.

Each document names its objects the way astronomers do (see
:data:`CONVENTIONS`): TNS ``AT 2024abc`` / ``SN 2019B``, ZTF and Gaia alert
IDs, GRB/FRB/Einstein Probe/LIGO-Virgo/IceCube event names, Swift/MAXI/XTE/IGR
/4FGL/PSR/2MASS/SDSS J-coordinate names built from a real sky position,
Messier/NGC/IC numbers and proper names such as Sgr A*.  Every mention carries
a character-offset span ``{start, end, label, convention, text}`` with
``text == document[start:end]``.

Labels: ``TRANSIENT`` (TNS, ZTF, Gaia), ``EVENT`` (GRB, FRB, EP, GW, IceCube),
``SOURCE`` (catalogue and proper names), ``FACILITY`` (telescopes and
instruments).

Names are synthetic by default.  Given ``gazetteer`` (a folder holding the
ZTF Bright Transient Survey list and the SIMBAD-derived lexicon, e.g.
``../shared/data/text/gazetteer``), a fraction of the names are real ones read
from it at run time; that data is never shipped with the package.
"""
from __future__ import annotations

import functools
import re
from datetime import date
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.text.conventions import CONVENTIONS as _NAMING_CONVENTIONS

__all__ = [
    "LABELS",
    "CONVENTIONS",
    "TextConfig",
    "Document",
    "simulate_documents",
    "load_gazetteer",
]

LABELS = ("TRANSIENT", "EVENT", "SOURCE", "FACILITY")

# One definition of the naming conventions, shared with the name finder (astroray.text.conventions);
# the simulator writes names of these, and of proper names, facilities and gazetteer entries.
_SIMULATED_CONVENTIONS = ("tns", "ztf", "gaia", "grb", "frb", "ep", "gw", "icecube", "swift", "maxi", "xte", "igr",
                          "4fgl", "psr", "2mass", "sdss", "messier", "ngc", "ic")
CONVENTIONS = {key: _NAMING_CONVENTIONS[key].pattern for key in _SIMULATED_CONVENTIONS}
CONVENTIONS.update({"proper": r".+", "facility": r".+", "gazetteer": r".+"})
"""Naming convention -> regular expression every generated name of it matches (full match)."""

_PROPER = ("Sgr A*", "M87*", "the Crab Nebula", "Cas A", "Cyg X-1", "Sco X-1", "Her X-1", "the Vela pulsar",
           "Betelgeuse", "Eta Carinae", "SN 1987A", "the Andromeda Galaxy", "the Large Magellanic Cloud",
           "the Small Magellanic Cloud", "the Galactic Centre", "Proxima Centauri", "Vega", "Polaris",
           "the Orion Nebula", "the Pleiades", "Tycho's supernova remnant", "Kepler's supernova remnant",
           "the Coma Cluster", "the Virgo Cluster", "3C 273", "Sirius", "Tabby's Star", "Swift J1644+57",
           "the Perseus Cluster", "Centaurus A")
_FACILITIES = ("Swift/XRT", "Swift/UVOT", "Swift/BAT", "Fermi/GBM", "Fermi-LAT", "NICER", "Chandra", "XMM-Newton",
               "NuSTAR", "MAXI/GSC", "INTEGRAL/IBIS", "Einstein Probe/WXT", "Einstein Probe/FXT", "ZTF", "ATLAS",
               "Pan-STARRS1", "Gaia", "NOT/ALFOSC", "Keck/LRIS", "VLT/X-shooter", "Gemini-North/GMOS",
               "Liverpool Telescope/SPRAT", "SALT/RSS", "LCO", "MeerKAT",
               "VLA", "ATCA", "CHIME/FRB", "ASKAP", "Rubin Observatory", "GTC/OSIRIS", "LCO/FLOYDS",
               "P60/SEDM", "HST/STIS", "JWST/NIRSpec", "TESS", "uGMRT", "FAST", "IceCube",
               "LIGO", "Virgo", "KAGRA")
_OPTICAL = ("ZTF", "ATLAS", "Pan-STARRS1", "Gaia", "Rubin Observatory")
_SPECTROGRAPHS = ("NOT/ALFOSC", "Keck/LRIS", "VLT/X-shooter", "Gemini-North/GMOS", "Liverpool Telescope/SPRAT",
                  "SALT/RSS", "GTC/OSIRIS", "LCO/FLOYDS", "P60/SEDM")
_XRAY = ("Swift/XRT", "NICER", "Chandra", "XMM-Newton", "NuSTAR", "MAXI/GSC", "INTEGRAL/IBIS",
         "Einstein Probe/WXT", "Einstein Probe/FXT")
_RADIO = ("MeerKAT", "VLA", "ATCA", "uGMRT", "ASKAP", "FAST")
_SN_CLASSES = ("SN Ia", "SN Ia-91T", "SN II", "SN IIP", "SN IIn", "SN Ib", "SN Ic", "SN Ic-BL", "SLSN-I", "TDE")
_OBJECT_NOUN = re.compile(r"^[A-Z][\w'-]*( [\w'-]+)* (Nebula|Cluster|Galaxy|Cloud|Stream|Group|Supercluster|Dwarf|"
                          r"Remnant|Star|Bubble|Arm|Association|Void|Filament)$")
_LOWER = np.array(list("abcdefghijklmnopqrstuvwxyz"))
_MJD0_ORDINAL = date(1858, 11, 17).toordinal()
_UPPER = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


class TextConfig(AstrorayConfig):
    """Text simulation settings.

    Parameters
    ----------
    kinds : dict
        Relative frequency of ``"atel"`` reports and ``"abstract"`` paragraphs.
    gazetteer : str or None
        Folder with real names (``*bts_meta*.txt``, ``*astroVoc*.txt``); None
        uses synthetic names only.
    gazetteer_fraction : float
        With a gazetteer, the fraction of transient and source names taken
        from it.
    years : (int, int)
        Range of discovery years in names and dates.
    """

    kinds: dict[Literal["atel", "abstract"], float] = {"atel": 0.6, "abstract": 0.4}
    gazetteer: str | None = None
    gazetteer_fraction: float = Field(0.5, ge=0.0, le=1.0)
    years: tuple[int, int] = (2016, 2026)

    @field_validator("years")
    @classmethod
    def _years(cls, value):
        if not 1990 <= value[0] <= value[1] <= 2099:
            raise ValueError("years must be (first, last) within 1990-2099")
        return value

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value):
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("kind weights must be non-negative with a positive sum")
        return value


@dataclass
class Document:
    """One generated document; ``entities`` are spans into ``text`` (which starts with ``title``)."""

    doc_id: str
    kind: str
    title: str
    text: str
    entities: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"doc_id": self.doc_id, "kind": self.kind, "title": self.title, "text": self.text,
                "entities": [dict(e) for e in self.entities]}


@dataclass(frozen=True)
class Gazetteer:
    """Real names: transients (IAU name, ZTF ID, class) and SIMBAD-like source names."""

    transients: tuple[tuple[str, str, str], ...]
    sources: tuple[str, ...]


@functools.lru_cache(maxsize=4)
def load_gazetteer(path: str) -> Gazetteer:
    """Read the real-name lists in ``path`` (cached per path).

    Raises
    ------
    InvalidInputError
        The folder is missing or holds neither list.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidInputError("gazetteer folder not found", source=str(folder))
    transients: list[tuple[str, str, str]] = []
    for bts in sorted(folder.glob("*bts_meta*.txt")):
        lines = [ln for ln in bts.read_text(errors="replace").splitlines() if ln and not ln.startswith("#")]
        header = lines[0].split(",") if lines else []
        if "ZTFID" not in header or "IAUID" not in header:
            continue
        i_ztf, i_iau, i_type = header.index("ZTFID"), header.index("IAUID"), header.index("type")
        for ln in lines[1:]:
            parts = ln.split(",")
            if len(parts) <= max(i_ztf, i_iau, i_type):
                continue
            ztf, iau, cls = parts[i_ztf].strip(), parts[i_iau].strip(), parts[i_type].strip()
            if re.fullmatch(CONVENTIONS["ztf"], ztf) and re.fullmatch(r"(AT|SN)\d{4}[A-Za-z]{1,3}", iau):
                transients.append((iau[:2] + " " + iau[2:], ztf, cls if cls not in ("-", "") else ""))
    sources: list[str] = []
    for lex in sorted(folder.glob("*astroVoc*.txt")):
        for name in lex.read_text(errors="replace").splitlines():
            name = name.strip()
            # object names, not bare acronyms or authors: catalogue + number, or "... Nebula" and the like
            if len(name) >= 4 and not name.startswith("*") and (
                    (" " in name and any(ch.isdigit() for ch in name)) or _OBJECT_NOUN.search(name)):
                sources.append(name)
    if not transients and not sources:
        raise InvalidInputError("no bts_meta or astroVoc name list in the gazetteer folder", source=str(folder))
    return Gazetteer(tuple(transients), tuple(sources))


def simulate_documents(n: int, *, config: TextConfig | None = None, seed: int = 0, start: int = 0) -> list[Document]:
    """Generate documents ``start .. start + n - 1``; document ``i`` depends only on ``(config, seed, i)``.

    Parameters
    ----------
    n : int
    config : TextConfig, optional
    seed, start : int

    Returns
    -------
    list of Document
    """
    if config is None:
        config = TextConfig()
    if not isinstance(config, TextConfig):
        raise InvalidInputError(f"config must be a TextConfig, got {type(config).__name__}")
    for name, value in (("n", n), ("seed", seed), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    gaz = load_gazetteer(str(Path(config.gazetteer).resolve())) if config.gazetteer else None
    kinds = sorted(config.kinds)
    weights = np.array([config.kinds[k] for k in kinds], dtype=np.float64)
    weights /= weights.sum()
    docs = []
    for i in range(int(start), int(start) + int(n)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5458], spawn_key=(i,)))
        kind = kinds[int(rng.choice(len(kinds), p=weights))]
        writer = _Writer(rng, config, gaz)
        title, body = (_atel if kind == "atel" else _abstract)(writer)
        docs.append(writer.document(f"simtext-s{seed}-{i:08d}", kind, title, body))
    return docs


# --------------------------------------------------------------------------- names


class _Names:
    """Synthetic names by convention, with a sky position for the coordinate names."""

    def __init__(self, rng, years):
        self.rng = rng
        self.years = years
        # one report is about one event: its names and its date agree
        self.year = int(rng.integers(years[0], years[1] + 1))
        self.month = int(rng.integers(1, 13))
        self.day = int(rng.integers(1, 29))
        self.anchor: tuple[float, float] | None = None  # position of the first coordinate name

    def _year(self):
        return self.year

    def _date(self):
        return self.year, self.month, self.day

    def _seq(self, lo=0):
        """A TNS-style suffix: first 26 of a year single capitals, then aa..zz, aaa..zzz."""
        n = int(self.rng.integers(lo, 26 + 26 ** 2 + 26 ** 3))
        if n < 26:
            return str(_UPPER[n])
        n -= 26
        if n < 26 ** 2:
            return "".join(_LOWER[[n // 26, n % 26]])
        n -= 26 ** 2
        return "".join(_LOWER[[n // 676, (n // 26) % 26, n % 26]])

    def _letters(self, k):
        return "".join(self.rng.choice(_LOWER, k))

    def _radec(self, near=False):
        """A random sky position, or (``near``) one within arcseconds of the document's first one."""
        if near and self.anchor is not None:
            ra, dec = self.anchor
            jitter = self.rng.normal(0.0, 1.0 / 3600.0, 2)
            return (ra + jitter[0] / max(np.cos(np.radians(dec)), 0.05)) % 360.0, float(np.clip(dec + jitter[1], -89.9, 89.9))
        ra = float(self.rng.uniform(0.0, 360.0))
        dec = float(np.degrees(np.arcsin(self.rng.uniform(-0.999, 0.999))))
        if self.anchor is None:
            self.anchor = (ra, dec)
        return ra, dec

    @staticmethod
    def _hms(ra, digits):
        total = ra / 15.0 * 3600.0
        h, rem = divmod(total, 3600.0)
        m, s = divmod(rem, 60.0)
        return int(h), int(m), s

    @staticmethod
    def _dms(dec):
        sign = "+" if dec >= 0 else "-"
        total = abs(dec) * 3600.0
        d, rem = divmod(total, 3600.0)
        m, s = divmod(rem, 60.0)
        return sign, int(d), int(m), s

    def make(self, convention, near=False):
        r = self.rng
        if convention == "tns":
            prefix = "SN" if r.random() < 0.5 else "AT"
            sep = " " if r.random() < 0.7 else ""
            return f"{prefix}{sep}{self._year()}{self._seq()}"
        if convention == "ztf":
            return f"ZTF{self._year() % 100:02d}{self._letters(7)}"
        if convention == "gaia":
            return f"Gaia{self._year() % 100:02d}{self._letters(int(r.integers(2, 4)))}"
        if convention == "grb":
            y, m, d = self._date()
            return f"GRB {y % 100:02d}{m:02d}{d:02d}{'ABCD'[int(r.integers(0, 4)) if r.random() < 0.3 else 0]}"
        if convention == "frb":
            y, m, d = self._date()
            suffix = str(_UPPER[int(r.integers(0, 26))]) if r.random() < 0.8 else self._letters(2)
            return f"FRB {y:04d}{m:02d}{d:02d}{suffix}"
        if convention == "ep":
            y, m, d = self._date()
            return f"EP{y % 100:02d}{m:02d}{d:02d}{self._letters(1)}"
        if convention == "gw":
            y, m, d = self._date()
            if r.random() < 0.6:
                return f"S{y % 100:02d}{m:02d}{d:02d}{self._letters(int(r.integers(1, 3)))}"
            tail = f"_{int(r.integers(0, 24)):02d}{int(r.integers(0, 60)):02d}{int(r.integers(0, 60)):02d}" \
                if r.random() < 0.6 else ""
            return f"GW{y % 100:02d}{m:02d}{d:02d}{tail}"
        if convention == "icecube":
            y, m, d = self._date()
            return f"IceCube-{y % 100:02d}{m:02d}{d:02d}A"
        ra, dec = self._radec(near)
        h, m, s = self._hms(ra, 0)
        sign, dd, dm, ds = self._dms(dec)
        if convention in ("swift", "4fgl"):
            prefix = "Swift" if convention == "swift" else "4FGL"
            return f"{prefix} J{h:02d}{m:02d}.{int(s / 6.0)}{sign}{dd:02d}{dm:02d}"
        if convention in ("maxi", "xte"):
            prefix = "MAXI" if convention == "maxi" else "XTE"
            return f"{prefix} J{h:02d}{m:02d}{sign}{min(int(abs(dec) * 10), 899):03d}"
        if convention == "igr":
            return f"IGR J{h:02d}{m:02d}{int(s / 6.0)}{sign}{dd:02d}{dm:02d}"
        if convention == "psr":
            if r.random() < 0.75:
                return f"PSR J{h:02d}{m:02d}{sign}{dd:02d}{dm:02d}"
            return f"PSR B{h:02d}{m:02d}{sign}{dd:02d}"
        if convention == "2mass":
            return f"2MASS J{h:02d}{m:02d}{int(s * 100):04d}{sign}{dd:02d}{dm:02d}{int(ds * 10):03d}"
        if convention == "sdss":
            return f"SDSS J{h:02d}{m:02d}{s:05.2f}{sign}{dd:02d}{dm:02d}{ds:04.1f}"
        if convention == "messier":
            k = int(r.integers(1, 111))
            return (f"M{k}", f"M {k}", f"Messier {k}")[int(r.choice(3, p=[0.6, 0.25, 0.15]))]
        if convention == "ngc":
            return f"NGC{' ' if r.random() < 0.85 else ''}{int(r.integers(1, 7841))}"
        if convention == "ic":
            return f"IC{' ' if r.random() < 0.85 else ''}{int(r.integers(1, 5387))}"
        if convention == "proper":
            return str(r.choice(_PROPER))
        raise AssertionError(convention)  # pragma: no cover


_LABEL_OF = {"tns": "TRANSIENT", "ztf": "TRANSIENT", "gaia": "TRANSIENT", "grb": "EVENT", "frb": "EVENT",
             "ep": "EVENT", "gw": "EVENT", "icecube": "EVENT", "facility": "FACILITY"}


class _Writer:
    """Builds one document from template pieces, recording the span of every name it writes."""

    _SLOT = re.compile(r"\{(\w+)\}")

    def __init__(self, rng, config: TextConfig, gaz: Gazetteer | None):
        self.rng = rng
        self.config = config
        self.gaz = gaz
        self.names = _Names(rng, config.years)
        # slot -> (text, label, convention, prefix written before the span)
        self.values: dict[str, tuple[str, str | None, str | None, str]] = {}
        self.parts: list[str] = []
        self.spans: list[dict] = []
        self.length = 0
        self.real_transient: tuple[str, str, str] | None = None

    def pick(self, options):
        return options[int(self.rng.integers(0, len(options)))]

    def entity(self, slot, convention, *, label=None, near=False):
        """Bind ``slot`` to a new name of ``convention`` (or to a gazetteer name).

        ``near`` puts a coordinate name at the position of the document's first one
        (a counterpart consistent with the source).
        """
        text, conv = self.names.make(convention, near), convention
        if convention in ("tns", "ztf") and self.real_transient is not None:
            # the other name of the real object already in this document
            text = self.real_transient[0] if convention == "tns" else self.real_transient[1]
        elif self.gaz is not None and self.rng.random() < self.config.gazetteer_fraction:
            if convention in ("tns", "ztf") and self.gaz.transients:
                self.real_transient = self.gaz.transients[int(self.rng.integers(0, len(self.gaz.transients)))]
                iau, ztf, cls = self.real_transient
                text = iau if convention == "tns" else ztf
                self.names.year = int(iau[3:7])  # the rest of the report follows the real object's year
                if cls:
                    self.values["gaz_class"] = (cls, None, None, "")
            elif convention == "proper" and self.gaz.sources:
                text, conv = self.gaz.sources[int(self.rng.integers(0, len(self.gaz.sources)))], "gazetteer"
        prefix = ""
        if text.startswith("the "):  # the article is prose, not part of the name
            prefix, text = "the ", text[4:]
        self.values[slot] = (text, label or _LABEL_OF.get(convention, "SOURCE"), conv, prefix)
        return text

    def facility(self, slot, options=_FACILITIES):
        self.values[slot] = (self.pick(options), "FACILITY", "facility", "")

    def value(self, slot, text):
        self.values[slot] = (text, None, None, "")

    def render(self, template: str) -> str:
        """Fill ``template`` and append it; entity slots become spans."""
        out = []
        pos = 0
        offset = self.length
        for match in self._SLOT.finditer(template):
            literal = template[pos:match.start()]
            out.append(literal)
            offset += len(literal)
            text, label, conv, prefix = self.values[match.group(1)]
            if prefix:
                before = ("".join(self.parts[-1:]) + "".join(out)).rstrip(" ")
                if not before or before.endswith((".", "\n")):
                    prefix = prefix.capitalize()
                out.append(prefix)
                offset += len(prefix)
            if label is not None:
                self.spans.append({"start": offset, "end": offset + len(text), "label": label, "convention": conv,
                                   "text": text})
            out.append(text)
            offset += len(text)
            pos = match.end()
        out.append(template[pos:])
        offset += len(template) - pos
        piece = "".join(out)
        self.parts.append(piece)
        self.length = offset
        return piece

    def document(self, doc_id, kind, title_template, body_templates):
        title = self.render(title_template)
        self.render("\n\n")
        for k, sentence in enumerate(body_templates):
            self.render(("" if k == 0 else " ") + sentence)
        text = "".join(self.parts)
        return Document(doc_id, kind, title, text, self.spans)


# --------------------------------------------------------------------------- templates


def _numbers(w: _Writer):
    r = w.rng
    y, mo, d = w.names._date()
    w.value("date", f"{y}-{mo:02d}-{d:02d}")
    w.value("ut", f"{int(r.integers(0, 24)):02d}:{int(r.integers(0, 60)):02d} UT")
    y, mo, d = w.names._date()
    mjd_of_date = date(y, mo, d).toordinal() - _MJD0_ORDINAL
    w.value("mjd", f"{mjd_of_date + float(r.uniform(5.0, 200.0)):.3f}")
    w.value("mag", f"{float(r.uniform(15.5, 21.5)):.2f}")
    w.value("mag_err", f"{float(r.uniform(0.02, 0.2)):.2f}")
    w.value("band", w.pick(["g", "r", "i", "o", "c", "V", "B", "z"]))
    w.value("z", f"{float(r.uniform(0.005, 0.3)):.3f}")
    w.value("offset", f"{float(r.uniform(0.3, 15.0)):.1f}")
    w.value("flux", f"{float(r.uniform(0.5, 50.0)):.1f}e-{int(r.integers(10, 13))}")
    w.value("nh", f"{float(r.uniform(0.1, 5.0)):.1f}e22")
    w.value("index", f"{float(r.uniform(1.2, 2.6)):.2f}")
    w.value("err", f"{float(r.uniform(0.5, 5.0)):.1f}")
    w.value("sigma", f"{int(r.integers(5, 30))}")
    w.value("dm", f"{float(r.uniform(100, 2500)):.1f}")
    w.value("phase", f"{int(r.integers(-12, 30)):+d}")
    w.value("velocity", f"{int(r.integers(6, 25)) * 1000:,}")
    w.value("limit", f"{float(r.uniform(20.0, 23.5)):.1f}")
    ra, dec = w.names.anchor if w.names.anchor is not None else w.names._radec()
    h, m, s = w.names._hms(ra, 2)
    sign, dd, dm_, ds = w.names._dms(dec)
    w.value("ra", f"{h:02d}:{m:02d}:{s:05.2f}")
    w.value("dec", f"{sign}{dd:02d}:{dm_:02d}:{ds:04.1f}")


def _atel(w: _Writer):
    flavour = w.pick(["optical", "optical", "xray", "event"])
    if flavour == "optical":
        w.entity("subject", "tns")
        w.entity("alt", w.pick(["ztf", "ztf", "gaia"]))
        w.entity("host", w.pick(["ngc", "ic", "sdss", "2mass", "messier"]), label="SOURCE")
        w.facility("survey", _OPTICAL)
        w.facility("spec", _SPECTROGRAPHS)
        sn_class = w.values["gaz_class"][0] if "gaz_class" in w.values and w.values["gaz_class"][0].startswith(
            ("SN", "TDE")) else w.pick(_SN_CLASSES)
        w.value("class", sn_class)
        _numbers(w)
        title = w.pick(["Spectroscopic classification of {subject} as a {class}",
                        "{spec} classification of {subject} ({alt})",
                        "Discovery and classification of {subject}, a young {class} in {host}",
                        "{subject}: a {class} in {host}",
                        "Classification of the optical transient {alt} (= {subject})"])
        body = [
            w.pick(["We report the spectroscopic classification of {subject} (= {alt}), discovered by {survey} on {date}.",
                    "{survey} detected the transient {alt} on {date} at {ut}, later registered on TNS as {subject}.",
                    "We obtained a spectrum of {subject} (also known as {alt}) with {spec} on {date}.",
                    "The transient {subject} was first detected by {survey} at {band} = {mag} +/- {mag_err} mag on {date}."]),
            w.pick(["The transient lies {offset} arcsec from the nucleus of {host} (z = {z}).",
                    "It is located at RA = {ra}, Dec = {dec} (J2000), {offset} arcsec from the centre of its host galaxy {host}.",
                    "Its host, {host}, has a catalogued redshift of z = {z}.",
                    "The position coincides with the outskirts of {host}, at a projected offset of {offset} arcsec."]),
            w.pick(["A {spec} spectrum taken on {date} shows broad features matching a {class} at about {phase} days from maximum light.",
                    "Cross-correlation with SNID templates gives a best match to a {class} at phase {phase} d.",
                    "The spectrum shows a blue continuum with broad absorption features; we classify it as a {class}.",
                    "We measure an absorption minimum velocity of {velocity} km/s, consistent with a {class}."]),
            w.pick(["Further observations are encouraged.",
                    "Follow-up with {survey} is ongoing.",
                    "We thank the {survey} team for the public alert stream.",
                    "Classifications are reported to the Transient Name Server."]),
        ]
    elif flavour == "xray":
        w.entity("subject", w.pick(["maxi", "swift", "xte", "igr"]), label="SOURCE")
        w.entity("counterpart", w.pick(["2mass", "4fgl", "psr", "sdss"]), label="SOURCE", near=True)
        w.facility("xray1", _XRAY)
        w.facility("xray2", _XRAY)
        w.facility("radio", _RADIO)
        _numbers(w)
        title = w.pick(["{xray1} detection of a new outburst of {subject}",
                        "Renewed X-ray activity from {subject}",
                        "{subject}: {xray2} follow-up of the new X-ray transient",
                        "Radio detection of {subject} with {radio}"])
        body = [
            w.pick(["{xray1} detected a new outburst of the X-ray transient {subject} on {date}.",
                    "Following the {xray1} trigger on {date} at {ut}, we observed {subject} with {xray2}.",
                    "The X-ray binary {subject} has been in outburst since {date} according to {xray1}."]),
            w.pick(["The spectrum is well fitted by an absorbed power law with photon index {index} and N_H = {nh} cm^-2.",
                    "The 0.5-10 keV flux is {flux} erg/cm^2/s, about {sigma} times higher than in quiescence.",
                    "Timing analysis reveals no significant pulsations."]),
            w.pick(["The refined position, RA = {ra}, Dec = {dec} with an uncertainty of {err} arcsec, is consistent with {counterpart}.",
                    "The nearest catalogued source is {counterpart}, {offset} arcsec away.",
                    "We note that {counterpart} lies within the error circle."]),
            w.pick(["We observed the field with {radio} on {date} and detect a source at {sigma} sigma.",
                    "Multi-wavelength observations are encouraged.",
                    "Monitoring with {xray2} continues."]),
        ]
    else:
        conv = w.pick(["grb", "grb", "frb", "ep", "gw", "icecube"])
        w.entity("subject", conv)
        w.entity("candidate", w.pick(["tns", "ztf"]))
        w.entity("galaxy", w.pick(["ngc", "ic", "sdss", "2mass"]), label="SOURCE")
        trigger = {"grb": ("Fermi/GBM", "Swift/BAT"), "frb": ("CHIME/FRB", "ASKAP"), "ep": ("Einstein Probe/WXT",),
                   "gw": ("LIGO", "Virgo", "KAGRA"), "icecube": ("IceCube",)}[conv]
        w.facility("trigger", trigger)
        w.facility("followup", _OPTICAL + _SPECTROGRAPHS)
        _numbers(w)
        title = w.pick(["{followup} observations of {subject}",
                        "{subject}: optical counterpart candidate {candidate}",
                        "Search for an optical counterpart of {subject} with {followup}",
                        "Possible host galaxy of {subject}"])
        body = [
            w.pick(["Following the detection of {subject} by {trigger} on {date}, we observed the localisation with {followup}.",
                    "We imaged the field of {subject} ({trigger} trigger at {ut}) with {followup}.",
                    "{trigger} reported {subject} on {date}; we started follow-up {offset} hours later."]),
            w.pick(["We identify the new source {candidate} at RA = {ra}, Dec = {dec}, with {band} = {mag} +/- {mag_err} mag.",
                    "No new source is found to a limiting magnitude of {band} > {limit}.",
                    "The candidate {candidate} is not present in archival images."]),
            w.pick(["The candidate lies {offset} arcsec from {galaxy} at z = {z}.",
                    "The localisation contains the galaxy {galaxy} (z = {z})."]
                   + (["If associated with {galaxy}, the implied dispersion measure excess is {dm} pc/cm^3."]
                      if conv == "frb" else [])),
            w.pick(["Further observations are planned.", "We encourage spectroscopic follow-up of {candidate}.",
                    "This message may be cited."]),
        ]
    # the opening and closing sentences stay put; the middle ones come in any order
    order = [0, *w.rng.permutation(np.arange(1, len(body) - 1)).tolist(), len(body) - 1]
    return title, [body[int(k)] for k in order]


def _abstract(w: _Writer):
    topic = w.pick(["transient", "source", "event"])
    w.facility("fac1")
    w.facility("fac2")
    w.entity("compare", "proper", label="SOURCE")
    w.entity("galaxy", w.pick(["messier", "ngc", "ic"]), label="SOURCE")
    if topic == "transient":
        w.entity("subject", w.pick(["tns", "tns", "ztf", "gaia"]))
        w.value("what", w.pick(["the nearby " + w.pick(_SN_CLASSES), "a luminous fast blue optical transient",
                                "a tidal disruption event", "an intermediate-luminosity red transient"]))
    elif topic == "source":
        w.entity("subject", w.pick(["psr", "4fgl", "swift", "maxi", "igr", "xte", "2mass", "sdss"]), label="SOURCE")
        w.value("what", w.pick(["a millisecond pulsar", "an accreting black hole candidate", "a blazar",
                                "a young stellar object", "a cataclysmic variable", "a changing-look AGN"]))
    else:
        w.entity("subject", w.pick(["grb", "frb", "gw", "ep", "icecube"]))
        w.value("what", w.pick(["a long gamma-ray burst", "a repeating fast radio burst", "a binary neutron star merger",
                                "a fast X-ray transient", "a high-energy neutrino alert"]))
    _numbers(w)
    title = w.pick(["Multi-wavelength observations of {subject}",
                    "{subject}: {what} in {galaxy}",
                    "The nature of {subject}",
                    "A study of {subject} with {fac1} and {fac2}"])
    body = [
        w.pick(["We present observations of {subject}, {what}.",
                "{subject} is {what} discovered on {date}.",
                "We report a detailed study of {subject}, which we interpret as {what}."]),
        w.pick(["Combining data from {fac1} and {fac2}, we trace its evolution over {sigma} epochs.",
                "Our campaign with {fac1} spans from {date} to MJD {mjd}, complemented by {fac2}.",
                "Data from {fac1} constrain its early emission, while {fac2} provides late-time limits."]),
        w.pick(["Its properties resemble those of {compare}, although the peak is {offset} times fainter.",
                "The source lies in {galaxy} at a distance corresponding to z = {z}.",
                "Unlike {compare}, no emission is detected below {limit} mag."]),
        w.pick(["These results constrain models of {what}.",
                "We discuss implications for the population of similar events and for {compare}.",
                "Future observations with {fac2} will test this interpretation."]),
    ]
    return title, body
