"""Tests of the central's catalog (central.catalog) on real SQLite files."""
