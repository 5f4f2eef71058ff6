"""The service's use cases: one function per state change, shared by the API, the web pages and the CLI.

Every state change is one use case and one transaction: it commits before it returns and rolls back
before it raises (`unit.use_case`), so no caller ever commits or rolls back.  Reads live here too,
with the access rules they ask `fairshare.workflow` for, so the pages never query the store.
"""
