"""The shared kernel: settings, Spark session, dialects & JDBC, Delta helpers, run ledger, CLI."""
