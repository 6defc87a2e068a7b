"""``python -m bench`` (``make bench``): every benchmark on SQLite, and on PostgreSQL when
MMT_BENCH_PG_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/test)."""

import os

from bench import stock

stock.main(["--database", "sqlite"])
if os.environ.get("MMT_BENCH_PG_URL"):
    stock.main(["--database", "postgresql", "--url", os.environ["MMT_BENCH_PG_URL"]])
