"""Training of the M4SC codec: the three stages of the paper (alignment, instruction tuning, joint
KAN-LLM-channel coding), their data, the loop and the model card (``python -m simulator train``)."""
