"""Tests of the LMDB chunk store (shared.store)."""
