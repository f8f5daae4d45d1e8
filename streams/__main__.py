"""``python -m streams worker``: start a Faust worker of the Forewarn app."""

import asyncio
import gc
import sys
from concurrent.futures import ThreadPoolExecutor

from forewarn.settings import keep_files_private

if __name__ == "__main__":
    keep_files_private()  # before the app creates its data folder
    import streams.customer_risk.agents
    import streams.device_faults.agents  # noqa: F401  (their tables, before the worker starts)
    from forewarn.kafka.admin import ensure_changelogs
    from streams.app import app, settings

    changelogs = {
        t.changelog_topic.get_topic_name(): t.partitions or app.conf.topic_partitions
        for t in app.tables.values()
    }
    # In a thread: asyncio.run would leave the main thread without the loop Faust runs on.
    with ThreadPoolExecutor(1) as pool:
        if "worker" in sys.argv[1:]:
            coroutine = ensure_changelogs(settings.kafka_bootstrap, changelogs)
            pool.submit(asyncio.run, coroutine).result()
            # The outreach sink writes tasks: bring the store's schema up before any agent runs
            # (the worker may start before the outreach service).
            from outreach.migrate import migrate

            migrate(settings.database_url)
    # Everything loaded so far (modules, models, contracts) lives as long as the worker: out of
    # the collector's sight. And a young generation sized for runs of thousands of readings:
    # with Python's 700 the collector ran inside every run's allocations, 12% of the agent's
    # time in py-spy (docs/benchmarks.md). Reference counting still frees everything at once;
    # only cycles wait longer.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # This process is the worker: a stop that cannot finish (the broker away) ends it.
    app.stop_timeout_s = settings.stop_timeout_s
    app.main()
