"""The gold marts: one module per mart (its contract `MART` and pure transforms), the shared
rules in `common`, incremental scoping in `scope`, and the list of marts in `registry`."""
