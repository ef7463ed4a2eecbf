"""Retrieval: pulling recordings from sites into the central, as jobs that survive restarts.

A retrieval job asks for a time span of a set of a site's devices in one quality; the
catalog keeps it with a cursor per device stream (`job_records.py`), and `job_state.py`
says which state changes a job and its streams may make. See docs/design/catalog.md.
"""

# The job records use the catalog's field checks and errors, and the catalog stores them:
# loading the catalog first lets either package be imported first.
import central.catalog  # noqa: F401
