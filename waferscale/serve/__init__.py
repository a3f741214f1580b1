"""Serving: many requests arriving over time on one placed model, from a trace to TTFT, TPOT and
goodput.

The package knows nothing of the wafer. A request trace is data (``trace.py``); a scheduler batches
requests continuously under a KV-cache budget in bytes (``scheduler.py``); a policy lays engines out
(``policies/``: colocated, disaggregated); a discrete-event loop drives them (``loop.py``); one
store collects the metrics (``metrics.py``). Every step's time comes from a step-cost object
(``costs.py``: the protocol, a grid with interpolation, a synthetic linear cost for tests), which
``waferscale/serve/wafer.py`` fills from the tile simulator of the placed program.
"""
