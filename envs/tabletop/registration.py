"""Register every tabletop task family as `tabletop/<family>-v0`.

Imported by `envs.registration`; imports nothing heavy (no mujoco, no gymnasium env code).
"""

from embodied.registry import register

SINGLE_STEP_FAMILIES: tuple[str, ...] = (
    "pick",
    "place",
    "push",
    "stack",
    "open-drawer",
    "close-drawer",
    "put-in-drawer",
    "reach",
    "move-next-to",
    "move",
)
LONG_HORIZON_FAMILIES: tuple[str, ...] = ("drawer-store", "bowl-all", "stack-three")
FAMILIES: tuple[str, ...] = SINGLE_STEP_FAMILIES + LONG_HORIZON_FAMILIES

_DESCRIPTIONS = {
    "pick": "pick up a named object",
    "place": "put a named object in the bowl or on the plate",
    "push": "push a named object left, right, forward or back",
    "stack": "stack one named block on another",
    "open-drawer": "open the drawer",
    "close-drawer": "close the drawer",
    "put-in-drawer": "put a named object in the open drawer",
    "reach": "touch a named object",
    "move-next-to": "move one named object next to another",
    "move": "move the arm in a named direction (RT-H language motions as instructions, for corrections)",
    "drawer-store": "long-horizon: open the drawer, put an object inside, close it",
    "bowl-all": "long-horizon: put all the blocks in the bowl",
    "stack-three": "long-horizon: stack three named blocks",
}


def env_id(family: str) -> str:
    return f"tabletop/{family}-v0"


for _family in FAMILIES:
    register(
        env_id(_family),
        "envs.tabletop.env:TabletopEnv",
        kind="env",
        extra="sim",
        description=f"MuJoCo tabletop, {_DESCRIPTIONS[_family]}",
        task=_family,
    )
