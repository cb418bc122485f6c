"""Reading survey data into astroray records.

* alerts (ZTF, Rubin/LSST, ELAsTiCC; Avro, Parquet, JSON): :func:`read_alerts`, :func:`iter_alerts`
* light curves (CSV/Parquet/SNANA FITS tables, alerts with history): :func:`read_lightcurve`,
  :func:`read_lightcurves`, :func:`lightcurves_from_alerts`
* label tables: :func:`read_labels`, :func:`attach_labels`
* what a file holds: :func:`detect_format`; a whole folder checked: :func:`check_path`
* FITS exposures (IMAGE, VARIANCE, MASK, PSF): :func:`read_exposure`, :func:`write_exposure`
* any telescope's FITS image with a WCS (single/multi-extension, companion mask/weight files,
  tile-compressed or gzipped; ZTF ``sciimg`` + ``mskimg``, LSST IMAGE/MASK/VARIANCE): :func:`read_survey_image`,
  :class:`SurveyReader`, :class:`SurveyReadConfig` (a :class:`SurveyImage`: an exposure but for its PSF)
* bounds on every read of untrusted bytes (file size, gzip expansion, JSON depth): :class:`ReadLimits`,
  :func:`using_limits` (defaults from ``ASTRORAY_MAX_*`` environment variables)
"""
from astroray.io.alerts import (
    alerts_from_records,
    alerts_from_table,
    iter_alerts,
    read_alerts,
)
from astroray.io.check import CheckReport, FileResult, check_file, check_path
from astroray.io.cutouts import decode_cutout
from astroray.io.fits import (
    exposure_to_bytes,
    read_exposure,
    read_image,
    write_exposure,
    write_image,
)
from astroray.io.lightcurves import (
    attach_labels,
    lightcurves_from_alerts,
    merge_lightcurves,
    read_labels,
    read_lightcurve,
    read_lightcurves,
    read_table,
)
from astroray.io.limits import ReadLimits, current_limits, using_limits
from astroray.io.sniff import FileFormat, detect_format
from astroray.io.survey import (
    LSST_MASK_PLANES,
    ZTF_MASK_BITS,
    SurveyImage,
    SurveyReadConfig,
    SurveyReader,
    map_mask_bits,
    read_survey_image,
)

__all__ = [
    "read_exposure",
    "write_exposure",
    "read_image",
    "write_image",
    "exposure_to_bytes",
    "read_alerts",
    "iter_alerts",
    "alerts_from_table",
    "alerts_from_records",
    "decode_cutout",
    "read_lightcurve",
    "read_lightcurves",
    "lightcurves_from_alerts",
    "merge_lightcurves",
    "read_labels",
    "attach_labels",
    "read_table",
    "FileFormat",
    "detect_format",
    "check_path",
    "check_file",
    "CheckReport",
    "FileResult",
    "ReadLimits",
    "current_limits",
    "using_limits",
    "read_survey_image",
    "SurveyReader",
    "SurveyReadConfig",
    "SurveyImage",
    "map_mask_bits",
    "ZTF_MASK_BITS",
    "LSST_MASK_PLANES",
]
