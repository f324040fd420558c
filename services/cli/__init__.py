"""The `questlog` command line: run the system, mint tokens, operate the log."""
