"""The migrations package: Drizzle Kit layout plus manifest.json, which the runtime reads through
the package's loader (counter_core.manifest.bundled_manifest)."""
