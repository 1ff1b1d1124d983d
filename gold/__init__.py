"""Gold: the marts analysts and the warehouse use, built from silver.

`gold.marts` declares each mart once — grain, key, columns with one-line definitions — and
holds the pure transforms (silver frames → mart) and the affected-key derivation that makes
the incremental path equal to a full rebuild. `gold.job` is the edge: it pins silver
versions, reads the change data feed, MERGEs (or overwrites) and records progress.
`gold/DICTIONARY.md` is generated from the declarations by `python -m gold.dictionary`.
"""
