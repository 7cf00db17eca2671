"""Build- and operations-time tools; never bundled into the Lambda."""
