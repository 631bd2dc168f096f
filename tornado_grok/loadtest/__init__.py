"""Load tester for OpenAI-compatible chat endpoints (see USAGE.md); entry: cli.main(argv)."""
