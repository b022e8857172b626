"""The run store: one folder per run (run_store), its row schema (schema), summary.json's
figures (summary), pass@k and maj@k (passk), and writes a crash never sees half of (atomic)."""
