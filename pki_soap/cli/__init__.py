"""Command-line programs: the only place that reads argv, prints, or picks exit codes."""
