"""What a researcher reads: report folders, figures and printed tables."""
