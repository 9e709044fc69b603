"""The agent's front doors: an OpenAI-compatible HTTP server and the terminal chat."""
