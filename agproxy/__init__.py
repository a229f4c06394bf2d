"""agproxy: a local AI gateway with OpenAI-, Anthropic- and Gemini-compatible APIs."""

__version__ = "0.1.0"
