"""supporttune: fine-tune small open LLMs into customer-support reply agents, with evidence."""

__version__ = "0.1.0"
