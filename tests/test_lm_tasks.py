"""The task registry: every task of the spec once, lookups by name or alias, users of the registry."""

import pytest
import torch

from videopoet.eval.generation import TASKS as SCORED
from videopoet.lm.tasks import MODALITIES, TASKS, TaskSpec, task
from videopoet.tokenizers import conditioning as C


def test_registry_covers_the_spec_and_the_command_line():
    assert set(TASKS) == {
        "unconditional",
        "text_to_video",
        "text_to_image",
        "frame_prediction",
        "image_to_video",
        "inpainting",
        "outpainting_central",
        "outpainting_horizontal",
        "outpainting_vertical",
        "stylization",
        "audio_to_video",
        "video_to_audio",
        "av_continuation",
        "text_to_audio",
        "editing",
    }
    cli = ("t2v", "t2i", "i2v", "continue", "inpaint", "outpaint", "stylize", "v2a", "a2v", "t2a")
    assert all(task(alias).alias == alias for alias in cli)  # design.md's `videopoet generate --task`
    for spec in TASKS.values():
        assert task(spec.name) is spec and task(spec.alias) is spec
        assert set(spec.inputs + spec.outputs) <= set(MODALITIES) and spec.outputs
        assert all(step in TASKS and not TASKS[step].composed_of for step in spec.composed_of)
    assert TASKS["text_to_audio"].composed_of == ("text_to_video", "video_to_audio")


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown task 'x2y'.*image_to_video \(i2v\)"):
        task("x2y")
    with pytest.raises(ValueError, match="unknown modalities"):
        TaskSpec(name="t", alias="t", description="", inputs=("smell",), outputs=("video",))


def test_users_of_the_registry():
    assert all(task(alias).alias == alias for alias in SCORED)
    v = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    by_alias = C.commit_condition(v, "outpaint")
    assert torch.equal(by_alias.video, C.commit_condition(v, "outpainting_central").video)
    assert set(C.COMMIT_PADDINGS) <= set(TASKS)
    with pytest.raises(ValueError, match="unknown COMMIT task 't2v'"):
        C.commit_condition(v, "t2v")
