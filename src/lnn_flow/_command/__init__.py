"""The `lnn-flow` command: its parameters and subcommands."""
