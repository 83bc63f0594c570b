"""Generation: sampling rules and the token-by-token generation loop."""

from weft.generation.generate import Completion, generate
from weft.generation.sampling import next_tokens

__all__ = ["Completion", "generate", "next_tokens"]
