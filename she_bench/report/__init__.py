"""Ablation reports across methods, variants and seeds: tables, plots, one HTML page."""
from she_bench.report.build import build_report

__all__ = ["build_report"]
