"""Image processing stages: background, differencing (ZOGY, classic), source extraction, cutouts."""
