"""Studies: many runs of any mode measured and tabulated. ``measure`` is one point (a run spec
through the driver, reduced to a row of its report), ``bench`` an ablation table, ``sweep`` a
design-space sweep on Ray, ``sweep_spec`` its spec."""
