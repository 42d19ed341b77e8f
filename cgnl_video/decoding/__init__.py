"""Video decoding without torch: readers (decord, PyAV), the sanity probe that picks one, and
the child process that decodes under a watchdog (``datasets.decoders`` is the torch-facing API)."""
