"""Tests of the agent's local HTTPS API, its accounts, TLS identity and zeroconf record."""
