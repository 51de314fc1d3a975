"""A corpus test for 'rowtrail bisect': exit 0 (good) when the corpus holds at least 40 crawl rows."""

import sys

import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1], columns=["source_id"])
crawl = sum(1 for s in table.column("source_id").to_pylist() if s == "crawl-2024-09")
print(f"{crawl} crawl rows")
sys.exit(0 if crawl >= 40 else 1)
