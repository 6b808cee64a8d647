"""eai-hub runtime: settings, broker, store, correctness core, admin API, CLI."""
