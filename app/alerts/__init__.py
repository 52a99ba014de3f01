"""Alerts: ``rules`` (rules and their state machine, pure), ``service`` (rules,
states, history and notifications through the store, evaluated on the
sampler's snapshots), ``webhooks`` (delivery with retries)."""
