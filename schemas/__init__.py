"""The codebook and the transcript model: the contract between prompts and code."""
