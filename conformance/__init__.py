"""conformance: does an endpoint really speak the OpenAI API, and where does it behave like Fireworks?"""

__version__ = "0.1.0"
