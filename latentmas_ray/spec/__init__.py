"""The run specification: the typed RunConfig and its sections (config, execution), how a field
declares its flag and check (fields), the command-line flags built from it (flags), agents files
(agents), model folders (models), per-sample seeds (seeding). The lowest layer: it imports only
errors, and every other package reads it."""
