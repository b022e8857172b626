"""The run loops: a batch of samples to store rows (batch), a run in this process (in_process),
vLLM kept full by streaming (streaming), lengths checked before any engine starts (lengths),
observers (observe) and progress bars (progress). Above methods and engines; below the Ray layer."""
