"""The Conduit benchmark (`bench/run`, run as `python -m conduit_bench`).

- cli: the command line; runner: one run, start to end.
- processes, stack: what the run starts (wasmhost, `wasmtime serve`, the
  native hello server, the OTLP sink, the stack with PostgreSQL and nginx).
- load: wrk and pgbench; measure: a load run with what it cost (counters
  from the replicas' metrics and /proc, see procfs), and interleaved rounds.
- seeding, database: the data set, and what psql does with it.
- profiling: perf profiles; report: the JSON, the Markdown and the charts.
- experiments: one module each, registered in experiments.EXPERIMENTS.
"""
