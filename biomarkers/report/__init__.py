"""Figures and tables for the HTML report."""
