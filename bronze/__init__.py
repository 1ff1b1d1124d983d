"""Bronze: incremental, loss-free JDBC extraction of ecom_db into append-only Delta.

Grain of `bronze.<table>`: one row per extracted source row version — every row whose
`_change_version` falls in an extraction window `[previous horizon, safe horizon)`, exactly
once, with `_run_id`, `_ingested_at`, `_source`, `_extract_horizon` and `_ingest_date`.
Nothing is dropped or altered. See `bronze.job` for the flow and `bronze.extract` for the SQL.
"""
