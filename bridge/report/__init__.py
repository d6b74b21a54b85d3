"""Reporting: the cross-toolkit summary and the figures."""
