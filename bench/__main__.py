"""``python -m bench`` (``make bench``): every benchmark on SQLite, and on PostgreSQL when
MMT_BENCH_PG_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/test). Each writes its results
under bench/results/; run them on a quiet machine (each records the load it saw)."""

import os
import sys

from bench import dispense, pages, stock, worklist

pg_url = os.environ.get("MMT_BENCH_PG_URL")
pg = ["--pg", pg_url] if pg_url else []
status = 0
status |= stock.main(["--database", "sqlite"]) or 0
if pg_url:
    status |= stock.main(["--database", "postgresql", "--url", pg_url]) or 0
status |= dispense.main(pg) or 0
status |= worklist.main(pg) or 0
status |= pages.main(pg) or 0
sys.exit(1 if status else 0)
