"""Plumbing every layer uses: argument checks, process settings, renamed keywords, strict JSON, study files."""
