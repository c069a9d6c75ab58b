"""medcorpus: a Spark + Delta Lake refinery for medical LLM training data."""

__version__ = "0.1.0"
