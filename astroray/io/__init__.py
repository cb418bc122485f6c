"""Reading survey data into astroray records.

* alerts (ZTF, Rubin/LSST, ELAsTiCC; Avro, Parquet, JSON): :func:`read_alerts`, :func:`iter_alerts`
* light curves (CSV/Parquet/FITS tables): :func:`read_lightcurve`, :func:`read_lightcurves`
* what a file holds: :func:`detect_format`; a whole folder checked: :func:`check_path`
"""
from astroray.io.alerts import alerts_from_records, alerts_from_table, iter_alerts, read_alerts
from astroray.io.cutouts import decode_cutout

__all__ = [
    "read_alerts",
    "iter_alerts",
    "alerts_from_table",
    "alerts_from_records",
    "decode_cutout",
]
