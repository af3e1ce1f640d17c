"""Text generation: search over step decoders (greedy, beam, sampling), step decoders
for the encoder-decoder and UNILM encoders, and a texts-in/texts-out API.

    from xling.generation import GenerationConfig, generate_texts, load_generation_model
"""

from xling.generation.api import generate_nbest, generate_texts, load_generation_model
from xling.generation.base import GenerationConfig, Hypothesis, StepDecoder
from xling.generation.decoders import check_decodable, step_decoder
from xling.generation.search import beam_search, generate, greedy, sample

__all__ = [
    "GenerationConfig", "Hypothesis", "StepDecoder", "beam_search", "check_decodable", "generate",
    "generate_nbest", "generate_texts", "greedy", "load_generation_model", "sample", "step_decoder",
]
