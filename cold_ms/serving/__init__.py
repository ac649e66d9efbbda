"""Multi-adapter CoLD serving: continuous batching and an OpenAI-compatible HTTP API."""
