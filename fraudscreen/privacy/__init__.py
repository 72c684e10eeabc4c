"""Differential privacy for what leaves the site: noisy, thresholded count tables."""
