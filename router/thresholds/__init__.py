"""The live policy: versioned thresholds, their hot swap, what-if and calibration (/v1/thresholds)."""
