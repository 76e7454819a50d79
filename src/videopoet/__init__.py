"""videopoet: an open implementation of VideoPoet (Kondratyuk et al., ICML 2024).

Sub-packages follow the pipeline: ``data`` (synthetic world, media, datasets, shards) → ``tokenizers``
(MAGVIT-v2 video, SoundStream audio) → ``lm`` → ``superres`` → back through the tokenizers to media.
Importing the package imports nothing heavy; import the sub-module you need.
"""

__version__ = "0.1.0"
