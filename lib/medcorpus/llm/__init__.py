"""LLM-backed stages against any OpenAI-compatible chat endpoint (client, prompts, cache, stages)."""
