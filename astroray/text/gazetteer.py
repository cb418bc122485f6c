"""Real object names for the entity ruler, read at run time from a gazetteer folder.

The folder (e.g. ``../shared/data/text/gazetteer``) holds

* a SIMBAD-derived lexicon (``*astroVoc*.txt``, one name per line): catalogue
  acronyms, multi-word object names ("Crab Nebula", "Sgr A East") and the
  proper names of stars ("Betelgeuse", "Alhena"), and
* the ZTF Bright Transient Survey list (``*bts_meta*.txt``, CSV after ``#``
  lines): ZTF id and IAU name of each transient.

Nothing of it ships with astroray.  :func:`load_gazetteer_names` keeps what is
a name: multi-word entries (not regions of the sky such as "Galactic Center",
not the Solar System), and single words that are proper names of objects,
leaving out catalogue acronyms ("2MASS", "Ross"), constellations, facilities
("Fermi", "Kepler") and ordinary words ("Trigger", "Mouse").
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from astroray.text.facilities import FACILITIES
from astroray.text.readers import InvalidTextError

__all__ = ["GazetteerNames", "load_gazetteer_names"]

# Single words in the lexicon that are not object names in ATel/GCN prose: facilities and
# missions (also catalogue prefixes), constellations, Solar System bodies, ordinary words.
_NOT_NAMES = frozenset(w.lower() for w in (
    "Einstein", "Fermi", "Ginga", "Hubble", "Kepler", "Suzaku", "Gaia", "Granat", "Copernicus", "Galileo", "Onsala",
    "Dwingeloo", "Kiso", "Swope", "Atlas", "Herschel", "Planck", "Chandra", "Integral", "Uhuru", "Tycho", "Brahe",
    "Hipparcos", "Escorial", "Kiev", "Cambridge", "Basel", "Lipperhey", "Janssen", "Harriot", "Hypatia",
    "Andromeda", "Antlia", "Apus", "Aquarius", "Aquila", "Ara", "Aries", "Auriga", "Bootes", "Caelum",
    "Camelopardalis", "Cancer", "Capricornus", "Carina", "Cassiopeia", "Centaurus", "Cepheus", "Cetus",
    "Chamaeleon", "Circinus", "Columba", "Corvus", "Crater", "Crux", "Cygnus", "Delphinus", "Dorado", "Draco",
    "Equuleus", "Eridanus", "Fornax", "Gemini", "Grus", "Hercules", "Horologium", "Hydra", "Hydrus", "Indus",
    "Lacerta", "Leo", "Lepus", "Libra", "Lupus", "Lynx", "Lyra", "Mensa", "Microscopium", "Monoceros", "Musca",
    "Norma", "Octans", "Ophiuchus", "Ophiucus", "Orion", "Pavo", "Pegasus", "Perseus", "Phoenix", "Pictor", "Pisces",
    "Puppis", "Pyxis", "Reticulum", "Sagitta", "Sagittarius", "Scorpius", "Sculptor", "Scutum", "Serpens",
    "Sextans", "Taurus", "Telescopium", "Triangulum", "Tucana", "Vela", "Virgo", "Volans", "Vulpecula",
    "Sun", "Moon", "Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto",
    "Charon", "Triton", "Titan", "Europa", "Io", "Ganymede", "Callisto", "Ceres", "Vesta", "Chiron", "Pholus",
    "Vulcan", "Osiris", "Wall", "Witch", "Revolver", "Scissors", "Sickle", "Lich",
    "Trigger", "Case", "Glass", "Hawk", "Sand", "Arch", "Braid", "Balloon", "Century", "Mouse", "Mice", "Spider",
    "Banana", "Beetle", "Bird", "Clone", "Eyes", "Fang", "Fred", "Ginger", "Kite", "Lemon", "Pentagon", "Peacock",
    "Rabbit", "Pistol", "Parachute", "Garland", "Diadem", "Necklace", "Keyhole", "Hourglass", "Seashell",
    "Honeycomb", "Eyelash", "Crossbones", "Crosspiece", "Cannonball", "Coathanger", "Lodestar", "Libertas",
    "Anon", "Riddle", "Song", "Snow", "Martin", "Ford", "Mill", "Mills", "Min", "Chow", "Kang", "Fortitudo",
    "Poltergeist", "Perky", "Dougie", "Browning", "Cervantes", "Quijote", "Dulcinea", "Paloma", "Manzana", "Rana",
    "Ogma", "Dagon", "Draugr", "Polis", "Orbitar", "Intercrus", "Meridiana", "Musica", "Felis", "Anser",
))
# acronyms in the lexicon's block of catalogue prefixes that are also names of one object
_ACRONYM_NAMES = frozenset({"LMC", "SMC"})
# multi-word entries that are regions or structures of the sky, not sources
_REGION = re.compile(r"^(?:(?:Galactic|Gal|Local|Milky Way|Solar|Gould)\b.*|.* (?:Arm|Plane|Stream|"
                     r"Supercluster|SUPERCL|Void|Filaments?|Field|Region|Deep Field|Bubble|Loop|Spur|Flare|Cirrus|"
                     r"Complex|Cloud Complex|Moving Group|Group of Stars|Ridge|Chain|Belt|Interface Region))$")


@dataclass(frozen=True)
class GazetteerNames:
    """Names read from a gazetteer folder.

    Attributes
    ----------
    sources : tuple of str
        Object names (multi-word names and proper names of single objects).
    transients : tuple of str
        IAU and ZTF names of the transients in the BTS list.
    catalogue_prefixes : tuple of str
        Catalogue acronyms of the lexicon ("1RXS", "PKS"): prefixes, not names.
    """

    sources: tuple[str, ...]
    transients: tuple[str, ...]
    catalogue_prefixes: tuple[str, ...]


_SIMBAD_FLAG = re.compile(r"^(?:\*\*?|V\*|EM\*|Cl\*|NAME) ")


def _lexicon_names(lines: list[str]) -> tuple[list[str], list[str]]:
    """Names and catalogue prefixes of the lexicon.

    The lexicon opens with its catalogue acronyms (single words, "0ES" ...
    "ZYCJ", among them author catalogues such as "Ross" and "Haro"); object
    names follow.  Single words after that block are proper names ("Crab",
    "Betelgeuse") unless they are facilities, constellations, Solar System
    bodies or ordinary words.
    """
    names, prefixes = [], []
    facilities = {f.lower() for f in FACILITIES}
    entries = [ln.strip() for ln in lines if ln.strip()]
    # the block of acronyms ends where multi-word names begin (three in a row; the block
    # itself holds a stray one, "CABS III")
    block_end = next((i for i in range(len(entries)) if all(" " in e for e in entries[i:i + 3])), len(entries))
    for i, name in enumerate(entries):
        if i < block_end:
            if name in _ACRONYM_NAMES:
                names.append(name)
            elif not name.startswith("*"):
                prefixes.append(name)
            continue
        name = _SIMBAD_FLAG.sub("", name)
        if len(name) < 3 or name.lower() in facilities:
            continue
        if " " in name:
            if _REGION.match(name) or (name.isupper() and not any(ch.isdigit() for ch in name)):
                continue  # sky regions; upper-case catalogue group names ("VIRGO SUPERCL")
            names.append(name)
        elif re.fullmatch(r"[A-Z][a-z]{3,}", name) and name.lower() not in _NOT_NAMES:
            names.append(name)
    return names, prefixes


@functools.lru_cache(maxsize=4)
def load_gazetteer_names(path: str) -> GazetteerNames:
    """Read the name lists in the folder ``path`` (cached per path).

    Raises
    ------
    InvalidTextError
        The folder is missing or holds neither list.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidTextError("gazetteer folder not found", source=str(folder))
    sources: list[str] = []
    prefixes: list[str] = []
    for lexicon in sorted(folder.glob("*astroVoc*.txt")):
        names, pre = _lexicon_names(lexicon.read_text(encoding="utf-8", errors="replace").splitlines())
        sources.extend(names)
        prefixes.extend(pre)
    transients: list[str] = []
    for bts in sorted(folder.glob("*bts_meta*.txt")):
        lines = [ln for ln in bts.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln and not ln.startswith("#")]
        header = lines[0].split(",") if lines else []
        if "ZTFID" not in header or "IAUID" not in header:
            continue
        i_ztf, i_iau = header.index("ZTFID"), header.index("IAUID")
        for ln in lines[1:]:
            parts = ln.split(",")
            if len(parts) > max(i_ztf, i_iau):
                transients.extend(p.strip() for p in (parts[i_ztf], parts[i_iau]) if p.strip() not in ("", "-"))
    if not sources and not transients:
        raise InvalidTextError("no astroVoc or bts_meta name list in the gazetteer folder", source=str(folder))
    return GazetteerNames(tuple(dict.fromkeys(sources)), tuple(dict.fromkeys(transients)),
                          tuple(dict.fromkeys(prefixes)))
