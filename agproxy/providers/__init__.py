"""Key-based providers beside the Google pool: Gemini API keys, OpenAI-compatible
endpoints and Anthropic API keys (z.ai among them), from the `providers` setting.

- registry.py: which provider serves a model, and a request through its keys;
- client.py: the wire (forwarding, the pivot asked in the provider's protocol);
- to_openai.py, to_anthropic.py, pivot.py: the pivot to and from their protocols;
- manage.py: adding, changing and removing entries (the admin API and the CLI).
"""
