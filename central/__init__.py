"""The central aggregator (sites, live relay, central recording, retrieval).

Built in a later issue; the package exists so the layout and the console script are stable.
"""
