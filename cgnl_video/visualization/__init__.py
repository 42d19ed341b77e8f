"""Looking inside non-local blocks: attention maps over space-time and output responses."""
