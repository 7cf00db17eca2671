"""The migration tooling behind `python -m tools.migrations`: build time and operations time.

Build time: `schema` (the declarative schema as data), `introspect` (schema.sql or a database to
that model), `diff` (two schemas to a plan of statements), `render` (a plan to Drizzle Kit style
SQL), `snapshot` (Drizzle Kit's meta/NNNN_snapshot.json), `verify` (replay a new migration before
it is written), `generate` (all of it, behind the `generate` and `check` commands), `folder` (the
journal and SQL files), `sqltext` (statement splitting), `manifest` (generated/manifest.json).
Operations time: `fleet` (`status` and `migrate` over every counter file under a root).
`cli` parses arguments; `exit_codes` is shared by all of them.
"""
