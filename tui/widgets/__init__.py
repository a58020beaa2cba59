"""Widgets of the console: list panes, plots, tables and one-line bars."""
