"""videopoet: an open implementation of VideoPoet (Kondratyuk et al., ICML 2024).

Sub-packages follow the pipeline: ``data`` (synthetic world, media, datasets, shards) → ``tokenizers``
(MAGVIT-v2 video, SoundStream audio) → ``lm`` → ``superres`` → back through the tokenizers to media.
Importing the package imports nothing heavy; import the sub-module you need.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: ``from videopoet import VideoPoetPipeline`` imports torch and the models only when asked for
    if name in ("VideoPoetPipeline", "VideoPoetOutput", "export_to_video", "export_to_gif"):
        from videopoet import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'videopoet' has no attribute {name!r}")


__all__ = ["VideoPoetOutput", "VideoPoetPipeline", "__version__", "export_to_gif", "export_to_video"]
