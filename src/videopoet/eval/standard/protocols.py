"""The paper's evaluation protocols as constants (VideoPoet §5, Table 1–4; spec §7).

Each drivers.py function takes these as defaults so that a call with no options follows the paper; the
sample counts are what the paper reports, and they are defaults of the command-line/benchmark drivers,
not something a unit test could afford.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Protocol:
    name: str  # benchmark and metric
    network: str  # feature / classifier network
    frames: int  # frames per clip fed to the network
    generate_size: int  # resolution the model generates at
    eval_size: int  # resolution the clip is brought to before the network's own preprocessing
    network_size: int  # network input resolution
    num_samples: int | None  # generated samples (None: one per caption/clip of the evaluation set)
    note: str  # anything else the protocol fixes


# Text-to-video, zero-shot: generate 128×128, upsample to 256×256, keep 16 of the 17 frames.
T2V_GENERATE_SIZE = 128
T2V_EVAL_SIZE = 256
T2V_FRAMES = 16

MSRVTT_CLIPSIM = Protocol(
    name="MSR-VTT CLIPSIM",
    network="CLIP ViT-B/16",
    frames=T2V_FRAMES,
    generate_size=T2V_GENERATE_SIZE,
    eval_size=T2V_EVAL_SIZE,
    network_size=224,
    num_samples=None,
    note="per-frame cosine similarity of CLIP image and caption embeddings, averaged over frames and clips "
    "(raw cosine, not ×100); paper: 0.3049 pretrained, 0.3123 fine-tuned",
)
MSRVTT_FVD = Protocol(
    name="MSR-VTT FVD",
    network="I3D Kinetics-400",
    frames=T2V_FRAMES,
    generate_size=T2V_GENERATE_SIZE,
    eval_size=T2V_EVAL_SIZE,
    network_size=224,
    num_samples=None,
    note="paper: 213",
)
UCF101_FVD = Protocol(
    name="UCF-101 FVD",
    network="I3D Kinetics-400",
    frames=T2V_FRAMES,
    generate_size=T2V_GENERATE_SIZE,
    eval_size=T2V_EVAL_SIZE,
    network_size=224,
    num_samples=10_000,
    note="class-name prompts; paper: 355",
)
UCF101_IS = Protocol(
    name="UCF-101 Inception Score",
    network="C3D (Sports-1M, fine-tuned on UCF-101)",
    frames=T2V_FRAMES,
    generate_size=T2V_GENERATE_SIZE,
    eval_size=T2V_EVAL_SIZE,
    network_size=112,
    num_samples=10_000,
    note="frames resized to a 128-pixel short side and centre-cropped to 112 (C3D's own preprocessing); "
    "10 splits; paper: 38.44",
)
K600_FRAME_PREDICTION_FVD = Protocol(
    name="Kinetics-600 frame prediction FVD",
    network="I3D Kinetics-400",
    frames=16,
    generate_size=128,
    eval_size=128,
    network_size=224,
    num_samples=50_000,
    note="5 context frames → 11 predicted",
)
SSV2_INPAINT_FVD = Protocol(
    name="SSv2 central in/outpainting FVD",
    network="I3D Kinetics-400",
    frames=16,
    generate_size=128,
    eval_size=128,
    network_size=224,
    num_samples=50_000,
    note="central box masked (inpainting) or kept (outpainting)",
)
DAVIS_STYLIZATION_CLIP = Protocol(
    name="DAVIS stylization CLIP score",
    network="CLIP ViT-B/16",
    frames=16,
    generate_size=128,
    eval_size=T2V_EVAL_SIZE,
    network_size=224,
    num_samples=None,
    note="CLIP frame–text similarity to the style prompt; paper: 0.3417",
)
FAD_VGGISH = Protocol(
    name="FAD",
    network="VGGish",
    frames=0,
    generate_size=0,
    eval_size=0,
    network_size=0,
    num_samples=None,
    note="16 kHz mono, log-mel 96×64 examples of 0.96 s, raw 128-d embeddings of every example pooled",
)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        MSRVTT_CLIPSIM,
        MSRVTT_FVD,
        UCF101_FVD,
        UCF101_IS,
        K600_FRAME_PREDICTION_FVD,
        SSV2_INPAINT_FVD,
        DAVIS_STYLIZATION_CLIP,
        FAD_VGGISH,
    )
}

# Network-side preprocessing shared by the FVD protocols (I3D input).
FVD_FRAMES = 16
FVD_SIZE = 224
# C3D's preprocessing for the UCF-101 IS: short side to 128, centre crop 112.
C3D_RESIZE = 128
C3D_CROP = 112
IS_SPLITS = 10
