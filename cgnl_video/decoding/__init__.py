"""Video decoding without torch: the open-video protocol (``video.py``), readers (decord, PyAV),
frames in memory, the sanity probe that picks a reader, and the child process that decodes under
a watchdog (``datasets.decoders`` chooses in-process or guarded from the config)."""
