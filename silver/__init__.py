"""Silver: one valid, conformed row per business key; every rejected row kept with its reasons.

`silver.contracts` declares each table's columns and grain, `silver.rules` the named validity
rules, `silver.transforms` the pure DataFrame steps, and `silver.job` the edge that reads
unprocessed bronze, MERGEs into `silver.<table>` and appends to `quarantine.<table>`.
"""
