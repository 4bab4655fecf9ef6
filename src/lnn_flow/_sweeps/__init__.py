"""Studies as data: sweep files, their plan, crash-safe result storage, summaries."""
