"""The multimodal prefix LM: vocabulary, task sequences and the transformer."""
