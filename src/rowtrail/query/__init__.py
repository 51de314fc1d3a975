"""Read side: rows of a version as Arrow, and DuckDB views over the store."""
