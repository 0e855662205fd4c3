"""The tabletop scene: a real arm (robosuite's model files) on a table with
blocks, cylinders, a bowl, a plate and a cabinet with a drawer, built with
`mujoco.MjSpec` and compiled once per env.

Frames: the robot base sits at the world origin on the table top (z = 0);
+x points away from the robot across the table, +y to its left, +z up.
All lengths are metres. Per-episode randomisation (poses, colours, lights,
cabinet placement) only writes model/data fields, so nothing is recompiled
on reset.
"""

from __future__ import annotations

import dataclasses
import math
import os

import mujoco
import numpy as np

# Named colours an instruction may use (RGBA, 0..1).
PALETTE: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.12, 1.0),
    "green": (0.15, 0.70, 0.20, 1.0),
    "blue": (0.15, 0.30, 0.90, 1.0),
    "yellow": (0.95, 0.85, 0.10, 1.0),
    "orange": (0.98, 0.50, 0.05, 1.0),
    "purple": (0.55, 0.20, 0.75, 1.0),
    "cyan": (0.10, 0.80, 0.85, 1.0),
}
# Unnamed tones for the table, bowl, plate and cabinet (never said in an instruction).
_TABLE_TONES = ((0.62, 0.50, 0.38), (0.55, 0.55, 0.55), (0.70, 0.62, 0.50), (0.45, 0.40, 0.35))
_FURNITURE_TONES = ((0.90, 0.90, 0.88), (0.75, 0.72, 0.65), (0.35, 0.35, 0.38), (0.80, 0.85, 0.90))

BLOCK_HALF = 0.02  # half edge of a block (a 4 cm cube)
CYL_RADIUS, CYL_HALF_HEIGHT = 0.02, 0.03
BOWL_FLOOR_RADIUS, BOWL_RIM_RADIUS, BOWL_HEIGHT = 0.07, 0.095, 0.045
PLATE_RADIUS, PLATE_HALF_HEIGHT = 0.085, 0.006
# Cabinet with one drawer; the drawer slides toward the robot (-x) to open.
DRAWER_INNER = (0.15, 0.17, 0.04)  # inner length (x), width (y), wall height (z)
DRAWER_TRAVEL = 0.15  # how far the drawer can slide out
DRAWER_FLOOR_Z = 0.015  # height of the drawer floor's top above the table when closed
HANDLE_GAP = 0.05  # clear space between the drawer front and the handle bar (room for fingertips)
HANDLE_Z = 0.035  # handle bar height above the table
CABINET_RECESS = 0.02  # the cabinet walls start this far behind the drawer front, so the hand clears them

_ASSETS_ENV = "EMBODIED_ROBOSUITE_ASSETS"


@dataclasses.dataclass(frozen=True)
class RobotModel:
    """Where an arm's model lives in robosuite and how it starts.

    xml: path below robosuite's assets root. home_ee: the end-effector position
    (m, world) the arm is solved to at reset, gripper pointing down.
    """

    name: str
    xml: str
    seed_qpos: tuple[float, ...]  # a posture near the home pose, to start the IK from
    gripper_xml: str = "grippers/panda_gripper.xml"


# Every arm gets the Panda's parallel gripper: one gripper model means grasps,
# gripper state and the experts behave the same whichever arm is chosen.
ROBOTS: dict[str, RobotModel] = {
    "panda": RobotModel(
        "panda",
        "robots/panda/robot.xml",
        (0, math.pi / 16, 0, -math.pi / 2 - math.pi / 3, 0, math.pi - 0.2, math.pi / 4),
    ),
    "ur5e": RobotModel("ur5e", "robots/ur5e/robot.xml", (-0.47, -1.735, 2.48, -2.275, -1.59, -1.991)),
    "iiwa": RobotModel("iiwa", "robots/iiwa/robot.xml", (0.0, 0.65, 0.0, -1.89, 0.0, 0.6, 0.0)),
    "xarm7": RobotModel("xarm7", "robots/xarm7/robot.xml", (0.0, 0.0, 0.0, 0.6, 0.0, 0.6, 0.0)),
}


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """What goes into the scene. Sizes in metres; image size in pixels."""

    robot: str = "panda"
    n_blocks: int = 3
    n_cylinders: int = 2
    render_height: int = 128
    render_width: int = 128

    def __post_init__(self) -> None:
        if self.robot not in ROBOTS:
            raise ValueError(f"unknown robot {self.robot!r}; choose one of {sorted(ROBOTS)}")
        if not 1 <= self.n_blocks <= len(PALETTE) or not 0 <= self.n_cylinders <= len(PALETTE):
            raise ValueError(
                f"need 1..{len(PALETTE)} blocks and 0..{len(PALETTE)} cylinders, got "
                f"{self.n_blocks} and {self.n_cylinders}"
            )


def robosuite_assets_root() -> str:
    """robosuite's model directory, found without importing robosuite (its import is slow and noisy)."""
    root = os.environ.get(_ASSETS_ENV)
    if root:
        return root
    import importlib.util

    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the tabletop scene loads its arm from robosuite's model files; install it with "
            "pip install 'embodied[sim]' (or set EMBODIED_ROBOSUITE_ASSETS to robosuite/models/assets)",
            name="robosuite",
        )
    return os.path.join(spec.submodule_search_locations[0], "models", "assets")


@dataclasses.dataclass
class SceneObject:
    """One movable object. kind: block | cylinder | bowl | plate. half_height: m."""

    name: str
    kind: str
    body_id: int
    qpos_adr: int  # address of its free joint's 7 qpos (pos, quat)
    qvel_adr: int
    geom_ids: tuple[int, ...]
    half_height: float
    radius: float  # horizontal extent from its centre (m), for placement
    colour: str = ""


@dataclasses.dataclass
class Scene:
    """A compiled scene and the ids the env, tasks and experts need."""

    model: mujoco.MjModel
    config: SceneConfig
    arm_joint_ids: np.ndarray
    arm_qpos_adr: np.ndarray
    arm_dof_adr: np.ndarray
    arm_actuator_ids: np.ndarray
    gripper_qpos_adr: np.ndarray  # two finger slides, (2,)
    gripper_actuator_ids: np.ndarray
    gripper_open_width: float  # finger separation when fully open (m)
    ee_site_id: int
    robot_geom_ids: frozenset[int]
    finger_geom_ids: tuple[frozenset[int], frozenset[int]]  # left, right finger geoms
    objects: list[SceneObject]
    cabinet_body_id: int
    drawer_body_id: int
    drawer_qpos_adr: int
    drawer_geom_ids: frozenset[int]
    drawer_front_geom_id: int
    table_geom_id: int
    light_ids: np.ndarray

    def object(self, name: str) -> SceneObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"scene has no object {name!r}; it has {[o.name for o in self.objects]}")

    @property
    def n_arm(self) -> int:
        return len(self.arm_joint_ids)


def _look_at_quat(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion (w,x,y,z) of a MuJoCo camera at `eye` looking at `target`, world z up."""
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    mat = np.stack([right, up, -fwd], axis=1)  # MuJoCo cameras look down their -z with +y up
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.flatten())
    return quat


def _absolutise_meshes(spec: mujoco.MjSpec, xml_path: str) -> None:
    base = os.path.join(os.path.dirname(xml_path), spec.meshdir or "")
    for mesh in spec.meshes:
        if mesh.file and not os.path.isabs(mesh.file):
            mesh.file = os.path.join(base, mesh.file)


def _strip_visuals(spec: mujoco.MjSpec) -> None:
    """Render the collision meshes instead of the heavy visual ones (and drop torque motors).

    The visual meshes are many and dense; the collision hulls look like the arm
    and keep two-camera rendering fast on a CPU.
    """
    used = set()
    for geom in list(spec.geoms):
        if geom.contype == 0 and geom.conaffinity == 0 and geom.group == 1:
            geom.delete()
        else:
            if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
                used.add(geom.meshname)
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            mesh.delete()
    for act in list(spec.actuators):
        act.delete()
    for sensor in list(spec.sensors):
        sensor.delete()
    for cam in list(spec.cameras):
        cam.delete()


def _robot_spec(robot: RobotModel) -> mujoco.MjSpec:
    root = robosuite_assets_root()
    arm_path = os.path.join(root, robot.xml)
    grip_path = os.path.join(root, robot.gripper_xml)
    if not os.path.exists(arm_path):
        raise FileNotFoundError(f"robot model {arm_path} is missing; is robosuite installed completely?")
    arm = mujoco.MjSpec.from_file(arm_path)
    grip = mujoco.MjSpec.from_file(grip_path)
    for s, p in ((arm, arm_path), (grip, grip_path)):
        _absolutise_meshes(s, p)
        _strip_visuals(s)
    for geom in arm.geoms:
        geom.rgba = [0.92, 0.92, 0.92, 1.0]
        geom.material = ""
    for geom in grip.geoms:
        geom.rgba = [0.25, 0.25, 0.25, 1.0] if "pad" not in geom.name else [0.1, 0.1, 0.1, 1.0]
        geom.material = ""
    for mat in list(arm.materials) + list(grip.materials):
        mat.delete()
    hand = arm.body("right_hand")
    mount = hand.add_frame()
    mount.attach_body(grip.body("right_gripper"), "gripper/", "")
    return arm


def _add_box(body, name, half, pos, rgba, **kw):
    return body.add_geom(
        name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(half), pos=list(pos), rgba=list(rgba), **kw
    )


def _add_cabinet(world) -> None:
    """A static cabinet with one drawer (slide joint "drawer"), front facing -x.

    Cabinet-frame x of the drawer front's outer face: -L/2 - t. The cabinet's
    walls and top start CABINET_RECESS behind it so a hand hooked behind the
    handle never touches them.
    """
    L, W, H = DRAWER_INNER
    t = 0.008  # wall thickness
    cab = world.add_body(name="cabinet", pos=[0.62, 0.3, 0.0])
    outer_h = DRAWER_FLOOR_Z + H + 0.04  # room above the drawer walls for an object inside
    x0, x1 = -L / 2 - t + CABINET_RECESS, L / 2 + 2 * t + 0.004  # cabinet extent along x
    xc, hx = (x0 + x1) / 2, (x1 - x0) / 2
    rgba = [0.8, 0.8, 0.8, 1]
    wy = W / 2 + 2 * t + 0.004
    _add_box(cab, "cab_top", (hx, wy, t / 2), (xc, 0, outer_h + t / 2), rgba)
    for side, y in (("left", 1), ("right", -1)):
        _add_box(cab, f"cab_{side}", (hx, t / 2, outer_h / 2), (xc, y * (wy - t / 2), outer_h / 2), rgba)
    _add_box(cab, "cab_back", (t / 2, wy, outer_h / 2), (x1 - t / 2, 0, outer_h / 2), rgba)
    drawer = cab.add_body(name="drawer", pos=[0, 0, 0])
    drawer.add_joint(
        name="drawer",
        type=mujoco.mjtJoint.mjJNT_SLIDE,
        axis=[-1, 0, 0],
        range=[0, DRAWER_TRAVEL],
        damping=8.0,
        frictionloss=0.5,
        armature=0.05,
    )
    drgba = [0.7, 0.6, 0.5, 1]
    floor_t = DRAWER_FLOOR_Z
    wall_h = (H + floor_t) / 2
    _add_box(drawer, "drawer_floor", (L / 2, W / 2, floor_t / 2), (0, 0, floor_t / 2), drgba, mass=0.3)
    _add_box(drawer, "drawer_front", (t / 2, W / 2 + t, wall_h), (-L / 2 - t / 2, 0, wall_h), drgba, mass=0.1)
    _add_box(drawer, "drawer_back", (t / 2, W / 2 + t, wall_h), (L / 2 + t / 2, 0, wall_h), drgba, mass=0.1)
    for side, y in (("left", 1), ("right", -1)):
        _add_box(drawer, f"drawer_{side}", (L / 2, t / 2, wall_h), (0, y * (W / 2 + t / 2), wall_h), drgba, mass=0.1)
    bar = 0.006
    hx_bar = -L / 2 - t - HANDLE_GAP - bar  # bar centre, in front of the drawer front
    hrgba = [0.2, 0.2, 0.2, 1]
    _add_box(drawer, "handle_bar", (bar, 0.06, bar), (hx_bar, 0, HANDLE_Z), hrgba, mass=0.02)
    for side, y in (("left", 1), ("right", -1)):
        _add_box(
            drawer,
            f"handle_post_{side}",
            ((HANDLE_GAP + 2 * bar) / 2, 0.005, bar),
            (-L / 2 - t - (HANDLE_GAP + 2 * bar) / 2 + bar, y * 0.055, HANDLE_Z),
            hrgba,
            mass=0.01,
        )


def _add_bowl(world, name: str) -> None:
    """A bowl from primitives: a flat floor and a ring of tilted staves.

    The staves float just above the table (their feet rest on the floor's rim),
    so only the floor touches the table: 14 box-box contacts cost more physics
    time than the whole rest of the scene.
    """
    body = world.add_body(name=name, pos=[0.5, 0, 0.0])
    body.add_freejoint(name=name)
    rgba = [0.9, 0.9, 0.88, 1]
    body.add_geom(
        name=f"{name}_floor",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[BOWL_FLOOR_RADIUS + 0.01, 0.004, 0],
        pos=[0, 0, 0.004],
        rgba=rgba,
        mass=0.15,
    )
    n = 14
    tilt = math.atan2(BOWL_RIM_RADIUS - BOWL_FLOOR_RADIUS, BOWL_HEIGHT)
    stave_half_len = 0.5 * math.hypot(BOWL_RIM_RADIUS - BOWL_FLOOR_RADIUS, BOWL_HEIGHT)
    r_mid = 0.5 * (BOWL_RIM_RADIUS + BOWL_FLOOR_RADIUS) + 0.004
    half_w = r_mid * math.tan(math.pi / n) + 0.002
    for i in range(n):
        a = 2 * math.pi * i / n
        q_yaw = np.array([math.cos(a / 2), 0, 0, math.sin(a / 2)])
        q_tilt = np.array([math.cos(tilt / 2), 0, math.sin(tilt / 2), 0])  # lean outward about the local y
        q = np.zeros(4)
        mujoco.mju_mulQuat(q, q_yaw, q_tilt)
        body.add_geom(
            name=f"{name}_stave{i}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.004, half_w, stave_half_len],
            pos=[r_mid * math.cos(a), r_mid * math.sin(a), BOWL_HEIGHT / 2 + 0.012],
            quat=list(q),
            rgba=rgba,
            mass=0.01,
        )


def build_scene(config: SceneConfig = SceneConfig()) -> Scene:
    """Compile the scene for `config` and collect the ids the rest of the suite uses."""
    robot = ROBOTS[config.robot]
    spec = mujoco.MjSpec()
    spec.modelname = f"tabletop_{robot.name}"
    spec.compiler.degree = False  # robosuite's joint ranges are radians; attach uses the parent's unit
    spec.option.timestep = 0.002
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    # Several contact points between flat convex faces (block on a plate, a
    # cylinder on the bowl floor), or they rock on a single point and never settle.
    spec.option.enableflags |= mujoco.mjtEnableBit.mjENBL_MULTICCD
    vis = spec.visual
    vis.quality.shadowsize = 0  # shadows off: cheap rendering
    vis.quality.offsamples = 0  # MSAA off
    vis.quality.numslices = 16  # coarser cylinders: invisible at 128 px, cheaper on a CPU rasteriser
    vis.quality.numstacks = 8
    vis.quality.numquads = 1
    vis.global_.offwidth = max(config.render_width, 64)
    vis.global_.offheight = max(config.render_height, 64)
    vis.headlight.ambient = [0.35, 0.35, 0.35]
    vis.headlight.diffuse = [0.35, 0.35, 0.35]
    vis.headlight.specular = [0.0, 0.0, 0.0]
    vis.map.znear = 0.01
    vis.map.zfar = 20.0
    spec.stat.extent = 1.5
    spec.stat.center = [0.4, 0, 0.2]

    world = spec.worldbody
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[3, 3, 0.1],
        pos=[0, 0, -0.75],
        rgba=[0.3, 0.32, 0.35, 1],
        contype=0,
        conaffinity=0,
    )
    # The table top collides as a plane (exact, cheap contacts for cylinders and
    # discs resting on it); the box is what cameras see.
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.55, 0.7, 0.025],
        pos=[0.35, 0, -0.025],
        rgba=[0.62, 0.5, 0.38, 1],
        contype=0,
        conaffinity=0,
    )
    world.add_geom(
        name="table_top",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[0.55, 0.7, 0.01],
        pos=[0.35, 0, 0],
        rgba=[0, 0, 0, 0],
        group=3,
        friction=[1.0, 0.005, 0.0001],
    )
    world.add_geom(
        name="table_leg",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.45, 0.6, 0.36],
        pos=[0.35, 0, -0.41],
        rgba=[0.4, 0.35, 0.3, 1],
        contype=0,
        conaffinity=0,
    )
    for i, (pos, d) in enumerate((((0.8, 0.8, 2.0), (-0.3, -0.3, -1.0)), ((-0.5, -0.8, 2.0), (0.4, 0.4, -1.0)))):
        world.add_light(
            name=f"light{i}",
            pos=list(pos),
            dir=list(d),
            directional=True,
            castshadow=False,
            diffuse=[0.5, 0.5, 0.5],
            specular=[0.05, 0.05, 0.05],
        )

    eye = np.array([1.45, 0.0, 0.85])
    world.add_camera(name="front", pos=list(eye), quat=list(_look_at_quat(eye, np.array([0.32, 0.0, 0.12]))), fovy=50.0)

    # The robot: attach the arm (with its gripper) at the origin and turn torque motors into position servos.
    arm = _robot_spec(robot)
    frame = world.add_frame(pos=[0, 0, 0])
    frame.attach_body(arm.body("base"), "robot/", "")
    # Wrist camera behind the fingers, looking along the approach axis (+z of the gripper frame).
    spec.body("robot/gripper/right_gripper").add_camera(
        name="wrist", pos=[-0.07, 0.0, 0.02], quat=list(_wrist_cam_quat()), fovy=75.0
    )

    _add_cabinet(world)
    _add_bowl(world, "bowl")
    plate = world.add_body(name="plate", pos=[0.5, -0.2, 0.0])
    plate.add_freejoint(name="plate")
    plate.add_geom(
        name="plate_disc",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[PLATE_RADIUS, PLATE_HALF_HEIGHT, 0],
        pos=[0, 0, PLATE_HALF_HEIGHT],
        rgba=[0.9, 0.9, 0.9, 1],
        mass=0.2,
    )
    objects_spec = []
    for i in range(config.n_blocks):
        b = world.add_body(name=f"block{i}", pos=[0.4, -0.3 + 0.1 * i, BLOCK_HALF])
        b.add_freejoint(name=f"block{i}")
        b.add_geom(
            name=f"block{i}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[BLOCK_HALF] * 3,
            mass=0.05,
            friction=[1.0, 0.01, 0.0005],
            condim=4,
        )
        objects_spec.append((f"block{i}", "block"))
    for i in range(config.n_cylinders):
        b = world.add_body(name=f"cylinder{i}", pos=[0.6, -0.3 + 0.1 * i, CYL_HALF_HEIGHT])
        b.add_freejoint(name=f"cylinder{i}")
        b.add_geom(
            name=f"cylinder{i}",
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[CYL_RADIUS, CYL_HALF_HEIGHT, 0],
            mass=0.05,
            friction=[1.0, 0.01, 0.0005],
            condim=4,
        )
        objects_spec.append((f"cylinder{i}", "cylinder"))

    # Collision classes (contype, conaffinity): robot (2, 1) never hits itself
    # (cheaper, and robosuite's hulls overlap at the joints); the drawer (4, 3)
    # slides on its joint without touching the table or cabinet (8, 3); movable
    # objects (1, 3) hit everything.
    robot_body_names = {b.name for b in spec.bodies if b.name.startswith("robot/")}
    drawer_geoms = {g.name for g in spec.geoms if g.parent.name == "drawer"}
    static = {"table_top"} | {g.name for g in spec.geoms if g.parent.name == "cabinet"}
    for geom in spec.geoms:
        if not (geom.contype or geom.conaffinity):
            continue
        if geom.parent.name in robot_body_names:
            geom.contype, geom.conaffinity = 2, 1
        elif geom.name in drawer_geoms:
            geom.contype, geom.conaffinity = 4, 3
        elif geom.name in static:
            geom.contype, geom.conaffinity = 8, 3
        else:
            geom.contype, geom.conaffinity = 1, 3
    for body in spec.bodies:
        if body.name in robot_body_names:
            body.gravcomp = 1.0  # gravity compensation: the servos only track, no Python torque loop

    arm_joints = [
        j for j in spec.joints if j.parent.name in robot_body_names and not j.name.startswith("robot/gripper/")
    ]
    for j in arm_joints:
        j.armature = max(j.armature, 0.1)
        j.damping = max(j.damping, 1.0)
        j.frictionloss = 0.0
        kp = 2000.0
        spec.add_actuator(
            name=f"act_{j.name}",
            target=j.name,
            trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gaintype=mujoco.mjtGain.mjGAIN_FIXED,
            gainprm=[kp] + [0] * 9,
            biastype=mujoco.mjtBias.mjBIAS_AFFINE,
            biasprm=[0, -kp, 1.0] + [0] * 7,  # positive kv slot = damping ratio
            ctrllimited=True,
            ctrlrange=list(j.range),
            forcelimited=True,
            forcerange=[-300, 300],
        )
    for side, sign in (("1", 1.0), ("2", -1.0)):
        kp = 1000.0
        rng = [0.0, 0.04] if sign > 0 else [-0.04, 0.0]
        spec.add_actuator(
            name=f"act_finger{side}",
            target=f"robot/gripper/finger_joint{side}",
            trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gaintype=mujoco.mjtGain.mjGAIN_FIXED,
            gainprm=[kp] + [0] * 9,
            biastype=mujoco.mjtBias.mjBIAS_AFFINE,
            biasprm=[0, -kp, -60.0] + [0] * 7,
            ctrllimited=True,
            ctrlrange=rng,
            forcelimited=True,
            forcerange=[-25, 25],
        )

    model = spec.compile()
    return _collect(model, config, robot_body_names, objects_spec)


def _wrist_cam_quat() -> np.ndarray:
    # Camera -z along the gripper's +z (approach axis): a half turn about x.
    return np.array([0.0, 1.0, 0.0, 0.0])


def _collect(model: mujoco.MjModel, config: SceneConfig, robot_body_names: set[str], objects_spec) -> Scene:
    def jid(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

    def bid(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)

    def gid(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)

    arm_acts = [a for a in range(model.nu) if model.actuator(a).name.startswith("act_robot/")]
    arm_j = np.array([model.actuator_trnid[a, 0] for a in arm_acts])
    finger_j = np.array([jid("robot/gripper/finger_joint1"), jid("robot/gripper/finger_joint2")])
    robot_bodies = {bid(n) for n in robot_body_names}
    robot_geoms = frozenset(g for g in range(model.ngeom) if model.geom_bodyid[g] in robot_bodies)

    def subtree_geoms(body_name):
        root = bid(body_name)
        out = set()
        for g in range(model.ngeom):
            b = model.geom_bodyid[g]
            while b != 0:
                if b == root:
                    out.add(g)
                    break
                b = model.body_parentid[b]
        return frozenset(out)

    objects = []
    for name, kind in [("bowl", "bowl"), ("plate", "plate")] + list(objects_spec):
        b = bid(name)
        j = model.body_jntadr[b]
        geoms = tuple(g for g in range(model.ngeom) if model.geom_bodyid[g] == b)
        half_h, radius = {
            "block": (BLOCK_HALF, BLOCK_HALF * math.sqrt(2)),
            "cylinder": (CYL_HALF_HEIGHT, CYL_RADIUS),
            "bowl": (BOWL_HEIGHT / 2, BOWL_RIM_RADIUS + 0.01),
            "plate": (PLATE_HALF_HEIGHT, PLATE_RADIUS),
        }[kind]
        objects.append(
            SceneObject(name, kind, b, int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j]), geoms, half_h, radius)
        )

    drawer_geoms = subtree_geoms("drawer")
    return Scene(
        model=model,
        config=config,
        arm_joint_ids=arm_j,
        arm_qpos_adr=model.jnt_qposadr[arm_j].copy(),
        arm_dof_adr=model.jnt_dofadr[arm_j].copy(),
        arm_actuator_ids=np.array(arm_acts),
        gripper_qpos_adr=model.jnt_qposadr[finger_j].copy(),
        gripper_actuator_ids=np.array([model.actuator("act_finger1").id, model.actuator("act_finger2").id]),
        gripper_open_width=0.08,
        ee_site_id=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "robot/gripper/grip_site"),
        robot_geom_ids=robot_geoms,
        finger_geom_ids=(subtree_geoms("robot/gripper/leftfinger"), subtree_geoms("robot/gripper/rightfinger")),
        objects=objects,
        cabinet_body_id=bid("cabinet"),
        drawer_body_id=bid("drawer"),
        drawer_qpos_adr=int(model.jnt_qposadr[jid("drawer")]),
        drawer_geom_ids=drawer_geoms,
        drawer_front_geom_id=gid("drawer_front"),
        table_geom_id=gid("table"),
        light_ids=np.arange(model.nlight),
    )
