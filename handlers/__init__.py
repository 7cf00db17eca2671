"""The counter API: Lambda entry points."""
