"""The OLTP simulator: a shop's customers, products, orders and clickstream, written into ecom_db.

`simulate` builds a batch (pure, vectorised, seeded), `defects` plants and classifies known
defects, `sinks` writes a batch in one transaction (COPY on PostgreSQL), `stream` runs one
batch or a stream of them, `webhook` notifies after each commit, `cli` is `ecom generate`.
"""
