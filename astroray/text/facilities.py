"""Names of telescopes, instruments, missions and detector networks (entity type ``FACILITY``).

The rule-based entity ruler of :mod:`astroray.text.pipeline` matches these
phrases (case-sensitive, as tokens); the statistical model learns the rest.
Written here by hand from the facilities that post to the ATel and GCN
networks.  ``Swift`` alone is the satellite (a facility); ``Swift J1727.8-1613``
is a source, which the naming conventions take first.
"""
from __future__ import annotations

__all__ = ["FACILITIES", "facility_phrases"]

_SPACE = (
    "Swift", "Swift/XRT", "Swift/BAT", "Swift/UVOT", "Swift-XRT", "Swift-BAT", "Swift-UVOT", "Swift XRT", "Swift BAT",
    "Swift UVOT", "BAT-Swift", "XRT", "BAT", "UVOT", "Fermi", "Fermi/GBM", "Fermi GBM", "Fermi-GBM", "GBM",
    "Fermi-LAT", "Fermi/LAT", "Fermi LAT", "LAT", "Fermi Gamma-ray Burst Monitor", "Gamma-ray Burst Monitor",
    "INTEGRAL", "INTEGRAL/SPI-ACS", "SPI-ACS", "INTEGRAL/IBIS", "IBIS", "ISGRI", "IBIS/ISGRI", "JEM-X", "SPI",
    "Konus-Wind", "Konus-WIND", "KONUS-Wind", "Konus", "AGILE", "AGILE/MCAL", "AGILE/GRID", "AGILE-GRID",
    "AGILE GRID", "MCAL", "MAXI", "MAXI/GSC", "MAXI/SSC", "NICER", "NuSTAR", "Chandra", "Chandra/ACIS", "ACIS",
    "XMM-Newton", "XMM", "EPIC", "Suzaku", "Suzaku WAM", "Suzaku/WAM", "RHESSI", "HETE-2", "HETE", "BeppoSAX",
    "RXTE", "RXTE/ASM", "RXTE/PCA", "Insight-HXMT", "Insight-HXMT/HE", "HXMT", "AstroSat", "AstroSat CZTI",
    "AstroSat/CZTI", "CZTI", "CALET", "CALET Gamma-Ray Burst Monitor", "CALET/CGBM", "CGBM", "GECAM", "GECAM-B",
    "GECAM-C", "GRID", "Glowbug", "SVOM", "SVOM/ECLAIRs", "ECLAIRs", "SVOM/GRM", "GRM", "SVOM/VT", "SVOM/MXT",
    "SVOM/C-GFT", "C-GFT", "MXT", "Einstein Probe", "Einstein Probe/WXT", "Einstein Probe/FXT", "EP", "EP/WXT",
    "EP/FXT", "EP-WXT", "EP-FXT", "WXT", "FXT", "LEIA", "Gaia", "TESS", "Kepler", "K2", "HST", "Hubble", "JWST",
    "Spitzer", "WISE", "NEOWISE", "GALEX", "eROSITA", "SRG", "SRG/eROSITA", "SRG/ART-XC", "ART-XC", "IPN",
    "Mars Odyssey", "HEND", "BepiColombo", "MGNS", "POLAR", "GRBAlpha", "VZLUSAT-2", "Solar Orbiter", "STIX",
    "ASO-S", "HXI", "Lomonosov", "UFFO", "IXPE", "XRISM", "Xtend", "Planck", "Herschel",
    "ROSAT", "Uhuru", "Ginga", "CGRO", "BATSE", "COMPTEL", "EGRET", "Ulysses",
)
_OPTICAL = (
    "ZTF", "ATLAS", "Pan-STARRS", "Pan-STARRS1", "PS1", "ASAS-SN", "GOTO", "BlackGEM", "MeerLICHT",
    "BlackGEM/MeerLICHT", "MASTER", "MASTER-Net", "Global MASTER-Net", "MASTER-II", "TAROT", "TAROT Calern",
    "BOOTES", "BOOTES-2", "BOOTES-3", "BOOTES-4", "BOOTES-5", "BOOTES-3/YA", "BOOTES-4/MET", "REM", "GROND", "NOT",
    "NOT/ALFOSC", "ALFOSC", "NOT/StanCam", "GTC", "10.4m GTC", "GTC/OSIRIS", "OSIRIS", "OSIRIS+", "OSIRIS+/GTC",
    "GTC/OSIRIS+", "GTC/EMIR", "VLT", "VLT/X-shooter", "X-shooter", "X-Shooter", "VLT/FORS2", "FORS2", "FORS",
    "VLT/MUSE", "MUSE", "HAWK-I", "VLT/HAWK-I", "Keck", "Keck I", "Keck II", "Keck/LRIS", "LRIS", "Keck/DEIMOS",
    "DEIMOS", "Keck/MOSFIRE", "MOSFIRE", "Keck/KCWI", "Gemini", "Gemini-North", "Gemini-South", "Gemini North",
    "Gemini South", "Gemini-N", "Gemini-S", "GMOS", "GMOS-N", "GMOS-S", "Gemini/GMOS", "Subaru", "Subaru/HSC",
    "HSC", "LBT", "LBT/MODS", "MMT", "Magellan", "SOAR", "Goodman", "SALT", "SALT/RSS", "LCO", "LCOGT",
    "LCO/FLOYDS", "FLOYDS", "Liverpool Telescope", "Liverpool Telescope/SPRAT", "LT", "SPRAT", "LT/IO:O",
    "Palomar", "P48", "P60", "P200", "SEDM", "P60/SEDM", "Lick", "KAIT", "Nickel", "Swope", "du Pont", "DECam",
    "Blanco", "CTIO", "SMARTS", "Skynet", "PROMPT", "Skynet/PROMPT", "TNG", "NTT", "ESO/NTT", "NTT/EFOSC2",
    "EFOSC2", "SOFI", "WHT", "INT", "Calar Alto", "CAHA", "OSN", "Xinglong-2.16m", "Xinglong", "Mephisto",
    "1.6m Mephisto", "LAMOST", "Lulin", "LOT", "Kiso", "Tomo-e Gozen", "MITSuME", "MITSuME Akeno",
    "MITSuME Okayama", "MITSuME Ishigakijima", "Mondy", "AbAO", "SAO RAS", "BTA", "CMO SAI", "AZT-20",
    "Assy AZT-20", "AZT-33IK", "Maidanak", "RTT150", "RATIR", "DDOTI", "DDOTI/OAN", "COLIBRI", "KMTNet", "Zadko",
    "Watcher", "Super-LOTIS", "ROTSE", "ROTSE-III", "RAPTOR", "Pi of the Sky", "CONCAM", "OPTIMA-Burst", "RIMOTS",
    "SARA", "GMG", "YNAO-GMG", "JinShan", "UKIRT", "VISTA", "VST", "Rubin Observatory", "Rubin", "LSST", "WFST",
    "TTT", "Greenhill Observatory", "Sutherland", "Mt. Abu", "HCT", "DOT", "GIT", "Nanshan", "NEXT", "SNIFS",
    "UH88", "ePESSTO+", "ePESSTO", "PESSTO", "Goodman spectrograph", "SOAR telescope", "Swift/UVOT",
    "Lowell Discovery Telescope", "LDT", "Kanata", "Seimei", "TRAPPIST",
)
_RADIO_HIGH_ENERGY = (
    "VLA", "Karl G. Jansky VLA", "ATCA", "MeerKAT", "ASKAP", "GMRT", "uGMRT", "LOFAR", "MWA", "CHIME", "CHIME/FRB",
    "FAST", "Parkes", "Murriyang", "Effelsberg", "AMI-LA", "AMI", "e-MERLIN", "EVN", "VLBA", "ALMA", "NOEMA",
    "SMA", "OVRO", "OVRO-LWA", "RATAN-600", "Arecibo", "GBT", "WSRT", "Apertif", "DSA-110", "H.E.S.S.", "HESS",
    "MAGIC", "VERITAS", "HAWC", "LHAASO", "LST-1", "CTA", "CTAO", "Pierre Auger Observatory", "IceCube", "ANTARES",
    "KM3NeT", "Baikal-GVD", "Super-Kamiokande", "Baksan", "Baksan Neutrino Observatory", "LIGO", "Virgo", "KAGRA",
    "LIGO/Virgo", "LIGO/Virgo/KAGRA", "LIGO-Virgo", "LIGO-Virgo-KAGRA", "LVK", "LVC", "GEO600", "AMON",
)
_MORE = (
    "Zwicky Transient Facility", "INTEGRAL SPI-ACS", "AGILE MCAL", "BurstCube", "StarBurst", "UVIT",
    "AstroSat/UVIT", "MASTER-OAFA", "MASTER-Tunka", "MASTER-Kislovodsk", "MASTER-SAAO", "MASTER-IAC",
    "MASTER-Amur", "MASTER-Tavrida", "TAROT-Calern", "TAROT-Chili", "TAROT-Reunion", "Terskol", "Zeiss-1000",
    "AZT-11", "AZT-22", "AZT-8", "ISON", "ISON-Kislovodsk", "ChILESCOPE", "TNT", "TRT", "Lijiang", "OHP", "OAJ",
    "T80", "T150", "COATLI", "TJO", "LOAO", "ORM", "Kitab", "CAO", "SSO", "SAAO", "SAAO/SALT", "Mt. Lemmon",
    "Mount Lemmon", "Catalina", "CSS", "ZTF/P48", "Las Cumbres Observatory", "Nordic Optical Telescope",
    "Gran Telescopio Canarias", "Very Large Telescope", "Very Large Array", "Hubble Space Telescope",
    "James Webb Space Telescope", "Neil Gehrels Swift Observatory", "Fermi Gamma-ray Space Telescope",
    "Chandra X-ray Observatory", "Gemini Observatory", "W. M. Keck Observatory", "Keck Observatory",
    "Palomar Observatory", "Lick Observatory", "Calar Alto Observatory", "Sierra Nevada Observatory",
    "Xinglong Observatory", "Lulin Observatory", "Crimean Astrophysical Observatory", "Abastumani Observatory",
    "Special Astrophysical Observatory", "Kiso Observatory", "Okayama Observatory",
)

FACILITIES: tuple[str, ...] = tuple(dict.fromkeys(_SPACE + _OPTICAL + _RADIO_HIGH_ENERGY + _MORE))
"""Facility names, as written (case matters)."""


def facility_phrases() -> tuple[str, ...]:
    """The facility names for the phrase ruler."""
    return FACILITIES
