"""MDT-small configuration: one dataclass, every size and switch named.

Defaults are "MDT-small": it trains on a 2-core CPU in minutes on the
tabletop suite and replans at >= 30 Hz on CPU. The mechanisms are those of
MDT (Reuss et al. 2024, intuitive-robots/mdt_policy); only sizes shrink
(MDT: ResNet-18 per camera, latent 512, 4+6 layers; here a 4-stage GroupNorm
CNN, width 128, 2+3 layers).

Images are resized inside the policy from the camera size (tabletop: 128x128)
to `image_size` (default 96x96) before the CNN: the speed/detail trade-off of
MDT-small lives in this one number.
"""

from __future__ import annotations

import dataclasses

STAGES = ("policy", "perception", "locator")
# The fields that shape or train the parts perception_init copies: they must agree between the two configs.
PERCEPTION_FIELDS = ("cnn_widths", "cnn_groups", "keypoint_stages", "spatial_tokens", "d_model", "goal_film",
                     "image_size", "language_encoder", "language_dim", "language_tokens", "goal_heatmaps",
                     "heatmap_absent")
# Every field a perception stage's training reads: two perception runs that agree on these learn the same thing.
PERCEPTION_TRAINING_FIELDS = (*PERCEPTION_FIELDS, "cameras", "random_shift")


@dataclasses.dataclass
class MDTConfig:
    # --- observations and chunks ---------------------------------------------------------------
    obs_horizon: int = 1            # frames of history (MDT uses 1)
    chunk: int = 10                 # actions predicted per replan (MDT: act_window_size = 10)
    execute_steps: int = 10         # actions of a chunk executed open loop before act() replans
    cameras: tuple[str, ...] = ()   # cameras to read; () = every camera of the embodiment spec
    image_size: tuple[int, int] = (96, 96)   # (h, w) the CNN sees, after resizing
    random_shift: int = 4           # train-time augmentation: pad and random-crop by this many pixels
    use_state: bool = True          # add one proprioceptive token per frame (MDT uses images only)
    state_keys: tuple[str, ...] = ()   # state entries that token reads; () = all (e.g. ("ee_pos", "gripper"))
    # State entries of 3-D world points (tabletop: the privileged goal_points, or a tracker's objects)
    # that the state token also reads as offsets from ee_pos (embodied.hand_relative, as
    # BCConfig.hand_relative does): the hand moves in that frame. A policy-stage field. Beyond MDT.
    hand_relative: tuple[str, ...] = ()
    # Train-time Gaussian noise (std, metres) added to those points before they are read, per sample and
    # axis, so that a policy trained on the simulator's exact points tolerates a locator's errors when it
    # acts on the locator's. A policy-stage field. Beyond MDT.
    hand_relative_noise: float = 0.0

    # --- network sizes ---------------------------------------------------------------------------
    cnn_widths: tuple[int, ...] = (16, 32, 64, 64)   # channels per stride-2 stage of the per-camera CNN
    cnn_groups: int = 8             # GroupNorm groups
    keypoint_stages: int = 1        # soft-argmax points from the last k stage maps (1: the last, coarsest, only)
    # Also one token per cell of each camera's last feature map (64 px, 4 stages: 4x4 = 16), so the goal
    # token can attend to where its object is. Beyond MDT, whose ResNet pools each camera to one token.
    spatial_tokens: bool = False
    d_model: int = 128              # token width of encoder and decoder
    n_heads: int = 4
    encoder_layers: int = 2         # non-causal transformer over observation and goal tokens
    decoder_layers: int = 3         # causal AdaLN-Zero decoder over the noisy action tokens
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    # --- goals -----------------------------------------------------------------------------------
    language_encoder: str | None = None   # folder of the frozen sentence encoder; None = packaged MiniLM
    language_dim: int = 384               # its embedding width (all-MiniLM-L6-v2: 384)
    # Attend over the encoder's token states (model.LanguageTokenGoal) instead of reading its mean-pooled
    # sentence vector, which blurs which named object is the subject ("stack the red block on the blue
    # block" and its reverse pool to cosine 0.997). Beyond MDT.
    language_tokens: bool = False
    goal_camera: str | None = None        # camera whose goal frame makes the image goal; None = first camera
    # FiLM every camera-CNN stage with the goal token (RT-1's language-conditioned vision), so what the
    # camera token keeps depends on the goal. Beyond MDT, which conditions only through the encoder.
    goal_film: bool = False
    language_fraction: float = 1.0        # share of training samples that keep a language label
    # Which text of a window becomes the language goal, drawn per sample with these probabilities:
    # the episode's task instruction, its current sub-task segment, its current language motion
    # (RT-H), so that "move arm left" given as an instruction (e.g. a live correction) is obeyed.
    instruction_probs: tuple[float, float, float] = (0.6, 0.2, 0.2)
    correction_hold_steps: int = 10       # ticks a correction replaces the task instruction

    # --- diffusion (EDM) -------------------------------------------------------------------------
    sigma_data: float = 0.5          # std of the normalised actions that EDM preconditioning assumes
    sigma_min: float = 0.001
    sigma_max: float = 80.0
    sigma_loc: float = -0.6931471805599453   # ln 0.5: log-logistic training density location
    sigma_scale: float = 0.5
    sampling_steps: int = 10                 # DDIM steps over an exponential sigma schedule

    # --- normalisation ---------------------------------------------------------------------------
    action_norm: str = "min_max"             # "min_max" or "bounds_q99", per action dimension
    state_std_floor: float = 1e-2            # constant state dims would otherwise blow up to 1e6

    # --- auxiliary losses ------------------------------------------------------------------------
    use_mgf: bool = True            # masked generative foresight on the frame t + future_offset
    future_offset: int = 3
    mgf_weight: float = 0.1
    mgf_image_size: tuple[int, int] = (32, 32)
    mgf_patch: int = 8
    mgf_mask_ratio: float = 0.75
    mgf_layers: int = 1
    mgf_dim: int = 64
    use_cla: bool = True            # contrastive latent alignment of language and image goals
    cla_weight: float = 0.1
    cla_dim: int = 64
    cla_init_temperature: float = 0.07
    # Predict the spec's privileged state (tabletop: where the goal's object is and where it must go)
    # from the encoder output, so that the camera CNNs must find the named object in scenes they have
    # not seen rather than recognise the scenes they have. Beyond MDT; 0 = off. Needs data recorded
    # in a simulator that provides privileged state (EmbodimentSpec.privileged).
    localisation_weight: float = 0.0
    # Two goal-conditioned heat maps per camera (vision.CameraEncoder), trained to peak where the goal's
    # object and its destination fall in the image (the spec's privileged GOAL_UV): dense, per-cell
    # labels, as CLIPort and Transporter give their pick and place maps, instead of one regression target
    # per scene. In the perception stage at weight 1, in the policy stage at localisation_weight. Needs
    # goal_film (the maps must depend on what is named); random_shift moves the labels with the image.
    # Beyond MDT.
    goal_heatmaps: bool = False
    # With goal_heatmaps, each map's softmax has one more class, "not in this image" (vision.with_null_cell),
    # which the points out of a camera's view are trained to pick; without it they are skipped and the map
    # points somewhere untrained. The wrist camera often does not see the object at first, and the point
    # tokens' certainty then says so, instead of a confident point the policy cannot tell from a real one
    # (its lifted points landed a median 4-30 cm off per family, docs/architecture.md). Beyond MDT.
    heatmap_absent: bool = False
    # With goal_heatmaps, each camera's heat-map points also enter the encoder as tokens of their own, one
    # per camera and point (model.PointTokens: Fourier features of (u, v) and the map's peak probability),
    # instead of only mixed into the camera token by its projection: where the named object is, in pixels,
    # reaches the action decoder's attention directly. A policy-stage field (perception_init ignores it).
    point_tokens: bool = False
    # With point_tokens, each point token also reads where that camera puts the point in 3-D: the map's
    # expected pixel lifted through the camera's depth image and calibration (vision.lift_image_points),
    # as an offset from the end effector in the world frame (metres). The arm moves in that frame, so
    # "the block is 8 cm ahead and 12 cm down" is nearly the action itself, where (u, v) in two images
    # leaves the network to learn each camera's geometry from a few hundred demonstrations. Needs
    # datasets recorded with depth (`embodied collect --depth`) and an `ee_pos` state entry; the
    # runner's observations carry depth and calibration. A policy-stage field. Beyond MDT.
    lift_points: bool = False
    # How point_tokens (and lift_points) read a heat map's point: "expected", its expectation over every
    # cell; "peak", the expectation over the 3x3 cells around its highest one (vision.heatmap_peak_points),
    # which stays on one object where the map hesitates between two instead of falling between them.
    # A policy-stage field: the perception stage trains the maps the same way for both. On unseen tabletop
    # scenes the two lift to the same far misses: the maps that miss point at another object with
    # confidence (docs/architecture.md).
    point_readout: str = "expected"

    # --- perception pretraining ------------------------------------------------------------------
    # "policy" learns actions. "perception" trains only the camera CNNs and the language-goal MLP, with a
    # small head, to place the spec's privileged state (tabletop: the named object and its target) from
    # the camera tokens under the instruction: it needs no demonstrations, so it can read many more
    # rendered scenes than there are demos (policies/mdt/perception.py). Beyond MDT, whose ResNets start
    # from ImageNet.
    stage: str = "policy"
    # A run or checkpoint folder (an MDT of either stage) whose camera CNNs and language-goal MLP start
    # this policy's, in place of a random initialisation. Read when a policy is built from dataset
    # statistics (training); a trained checkpoint holds the weights itself and never reads it again.
    perception_init: str | None = None
    # With perception_init, the copied parts (camera CNNs with their heat-map heads, language-goal MLP)
    # learn at the training lr times this. Below 1, imitation of a few hundred demonstrations' layouts
    # rewrites less of what perception learned on thousands of scenes; 0 freezes them. At 0.1 the
    # nine-family bench did no better (docs/architecture.md, "Perception pretraining").
    perception_lr_scale: float = 1.0
    # "locator" (stage) trains policies/mdt/locator.py: dense 3-D votes for where the goal's points are,
    # from each camera's RGB-D at image_size, under the instruction's token states. A policy with
    # `locator` = such a run or checkpoint folder copies its weights and, when it acts, reads the goal's
    # points (the spec's privileged goal_points) from it, never from the simulator; it trains on the
    # simulator's (with hand_relative_noise). Beyond MDT.
    locator: str | None = None
    # With a locator: the cameras of the locator's whose estimates are fused; () = all. A camera whose
    # "not in view" class is not yet trained claims certainty on points it does not see (the wrist at
    # step 4 000: 0.46-0.86 on six such points), and then fusing it costs more than it adds. A policy-stage
    # field.
    locator_cameras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.state_keys = tuple(self.state_keys)
        self.hand_relative = tuple(self.hand_relative)
        self.locator_cameras = tuple(self.locator_cameras)
        self.image_size = tuple(int(v) for v in self.image_size)
        self.mgf_image_size = tuple(int(v) for v in self.mgf_image_size)
        self.cnn_widths = tuple(int(v) for v in self.cnn_widths)
        self.instruction_probs = tuple(float(p) for p in self.instruction_probs)
        problems = []
        if not 1 <= self.execute_steps <= self.chunk:
            problems.append(f"execute_steps={self.execute_steps} must be in 1..chunk={self.chunk}")
        if self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if len(self.instruction_probs) != 3 or min(self.instruction_probs) < 0 or sum(self.instruction_probs) <= 0:
            problems.append(f"instruction_probs={self.instruction_probs} must be 3 non-negative weights "
                            "(task, subtask, language_motion) with a positive sum")
        if not 0.0 <= self.language_fraction <= 1.0:
            problems.append(f"language_fraction={self.language_fraction} must be in [0, 1]")
        if self.localisation_weight < 0:
            problems.append(f"localisation_weight={self.localisation_weight} must be >= 0")
        if self.goal_heatmaps and not self.goal_film:
            problems.append("goal_heatmaps=True needs goal_film=True: the heat maps must depend on what is named")
        if self.heatmap_absent and not self.goal_heatmaps:
            problems.append("heatmap_absent=True needs goal_heatmaps=True: the null cell belongs to the heat maps")
        if self.point_tokens and not self.goal_heatmaps:
            problems.append("point_tokens=True needs goal_heatmaps=True: the tokens are the heat maps' points")
        if self.hand_relative and not self.use_state:
            problems.append(f"hand_relative={self.hand_relative} needs use_state=True: the state token reads them")
        if self.lift_points and not self.point_tokens:
            problems.append("lift_points=True needs point_tokens=True: the lifted points join those tokens")
        if self.point_readout not in ("expected", "peak"):
            problems.append(f"point_readout={self.point_readout!r}: choose 'expected' or 'peak'")
        if self.perception_lr_scale < 0:
            problems.append(f"perception_lr_scale={self.perception_lr_scale} must be >= 0 (0 freezes the parts "
                            "perception_init copies)")
        if self.hand_relative_noise < 0:
            problems.append(f"hand_relative_noise={self.hand_relative_noise} must be a std in metres, >= 0")
        if self.stage == "locator" and not self.language_tokens:
            problems.append("stage='locator' needs language_tokens=True: the locator attends over the words")
        if self.locator and self.stage != "policy":
            problems.append(f"locator={self.locator!r} is read by a policy; stage={self.stage!r} trains no policy")
        if self.stage not in STAGES:
            problems.append(f"stage={self.stage!r} must be one of {STAGES}")
        if self.action_norm not in ("min_max", "bounds_q99"):
            problems.append(f"action_norm={self.action_norm!r} must be 'min_max' or 'bounds_q99'")
        if not 0 < self.sigma_min < self.sigma_max:
            problems.append(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        h, w = self.mgf_image_size
        if h % self.mgf_patch or w % self.mgf_patch:
            problems.append(f"mgf_image_size={self.mgf_image_size} must be a multiple of mgf_patch={self.mgf_patch}")
        if not 0.0 < self.mgf_mask_ratio < 1.0:
            problems.append(f"mgf_mask_ratio={self.mgf_mask_ratio} must be in (0, 1)")
        for c in self.cnn_widths:
            if self.cnn_groups < 1 or c % self.cnn_groups:
                problems.append(f"cnn width {c} is not divisible by cnn_groups={self.cnn_groups}")
        if problems:
            raise ValueError("invalid MDTConfig: " + "; ".join(problems))
