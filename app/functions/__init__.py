"""Per-function metrics (issue 18): how long each task takes, how long it waits, how often it fails.

``sketch`` is the mergeable log histogram (pure); ``store`` keeps one sketch per
(backend, system, queue, function) and interval in the state store, in the same
tiers as queue history, and reads windows back; ``service`` is what the sampler
runs each tick: it asks every adapter for the timings since its cursor, within a
budget, and writes them. Page views only read the store.
"""
