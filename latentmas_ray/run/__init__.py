"""The run loops: a batch of samples to results (batch), results to store rows, the one row
builder every placement calls (rows), a run in this process (in_process), vLLM kept full by
streaming (streaming), prompt lengths measured before any engine starts (lengths), observers
(observe) and progress bars (progress). Above methods and engines; below the Ray layer."""
