"""Models: the recurrent language model (the tagger lives in :mod:`weft.tagging`)."""

from weft.models.rnn_lm import LMOutput, RNNLanguageModel, State, detach_state

__all__ = ["LMOutput", "RNNLanguageModel", "State", "detach_state"]
