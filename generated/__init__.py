"""The migrations package: Drizzle Kit layout plus manifest.json, read at runtime through importlib.resources."""
