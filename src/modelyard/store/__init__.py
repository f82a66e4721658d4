"""Hosts the metrics store."""
