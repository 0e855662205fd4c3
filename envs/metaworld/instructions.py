"""Language instructions for the 50 Meta-World v3 tasks, written for this project.

Each task has several paraphrases of the same goal, so that a
language-conditioned policy does not latch onto one fixed string. The first
paraphrase is the canonical one (used as the registry description); the env
picks one per episode from its seed unless the caller passes its own text.
Directions are the robot's: "forward" is away from the robot base, "back"
towards it.
"""

from __future__ import annotations

INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "assembly-v3": (
        "put the ring onto the peg",
        "pick up the nut and fit it over the peg",
        "grab the round nut by its handle and slide it down onto the peg",
        "assemble the nut on the peg",
    ),
    "basketball-v3": (
        "dunk the ball into the hoop",
        "pick up the basketball and drop it through the basket",
        "score a basket with the ball",
        "grab the ball and put it in the hoop",
    ),
    "bin-picking-v3": (
        "move the puck from one bin to the other",
        "pick the puck out of its bin and drop it in the other bin",
        "transfer the block into the second bin",
        "take the puck from the left bin and place it in the right bin",
    ),
    "box-close-v3": (
        "close the box with its lid",
        "pick up the lid and put it on the box",
        "grab the cover and place it on top of the box",
        "put the lid back on the box",
    ),
    "button-press-topdown-v3": (
        "press the button from the top",
        "push the button down",
        "press down on the button from above",
        "push the button downwards",
    ),
    "button-press-topdown-wall-v3": (
        "press the button from the top behind the wall",
        "reach past the wall and push the button down",
        "push the button down from above, avoiding the wall",
        "press down on the button that sits behind the wall",
    ),
    "button-press-v3": (
        "press the button",
        "push the button in",
        "push the button forward until it clicks",
        "press the button on the front of the box",
    ),
    "button-press-wall-v3": (
        "press the button behind the wall",
        "go around the wall and push the button in",
        "reach past the wall and press the button",
        "push the button in without hitting the wall",
    ),
    "coffee-button-v3": (
        "press the button on the coffee machine",
        "push the coffee machine's button",
        "start the coffee machine by pressing its button",
        "hit the button on the coffee maker",
    ),
    "coffee-pull-v3": (
        "pull the mug out from under the coffee machine",
        "take the cup away from the coffee machine",
        "slide the mug back from the coffee maker to the target",
        "move the coffee cup out of the machine towards you",
    ),
    "coffee-push-v3": (
        "push the mug under the coffee machine",
        "slide the cup into the coffee maker",
        "move the mug forward under the spout of the coffee machine",
        "put the coffee cup beneath the machine",
    ),
    "dial-turn-v3": (
        "turn the dial",
        "rotate the knob",
        "twist the dial around to the target",
        "spin the dial half a turn",
    ),
    "disassemble-v3": (
        "take the ring off the peg",
        "lift the nut up and off the peg",
        "pull the nut off the peg",
        "remove the nut from the peg",
    ),
    "door-close-v3": (
        "close the door",
        "swing the door shut",
        "push the open door closed",
        "shut the door",
    ),
    "door-lock-v3": (
        "lock the door",
        "turn the door lock to the locked position",
        "press the lock on the door down to lock it",
        "rotate the latch to lock the door",
    ),
    "door-open-v3": (
        "open the door",
        "pull the door open by its handle",
        "swing the door open",
        "grab the handle and open the door",
    ),
    "door-unlock-v3": (
        "unlock the door",
        "turn the door lock to the unlocked position",
        "rotate the latch to unlock the door",
        "move the lock on the door sideways to unlock it",
    ),
    "drawer-close-v3": (
        "close the drawer",
        "push the drawer shut",
        "slide the drawer closed",
        "push the open drawer back in",
    ),
    "drawer-open-v3": (
        "open the drawer",
        "pull the drawer out",
        "grab the drawer handle and pull it open",
        "slide the drawer open",
    ),
    "faucet-close-v3": (
        "turn the faucet off",
        "close the tap",
        "rotate the faucet handle to shut off the water",
        "swing the faucet handle closed",
    ),
    "faucet-open-v3": (
        "turn the faucet on",
        "open the tap",
        "rotate the faucet handle to let the water run",
        "swing the faucet handle open",
    ),
    "hammer-v3": (
        "hammer the nail into the wall",
        "pick up the hammer and drive the nail in",
        "use the hammer to knock the nail into the board",
        "grab the hammer and hit the nail",
    ),
    "hand-insert-v3": (
        "put your hand into the hole",
        "insert the gripper into the hole in the table",
        "lower the hand into the opening",
        "reach down into the hole",
    ),
    "handle-press-side-v3": (
        "press the handle down from the side",
        "push the side handle downwards",
        "reach the handle from the side and press it down",
        "press down on the handle, approaching from the side",
    ),
    "handle-press-v3": (
        "press the handle down",
        "push the handle downwards",
        "push down on the handle",
        "lower the handle by pressing on it",
    ),
    "handle-pull-side-v3": (
        "pull the handle up from the side",
        "lift the side handle upwards",
        "reach the handle from the side and pull it up",
        "raise the handle, approaching from the side",
    ),
    "handle-pull-v3": (
        "pull the handle up",
        "lift the handle",
        "raise the handle upwards",
        "pull up on the handle",
    ),
    "lever-pull-v3": (
        "pull the lever up",
        "raise the lever",
        "swing the lever upwards",
        "lift the lever to the top",
    ),
    "peg-insert-side-v3": (
        "insert the peg into the hole from the side",
        "pick up the peg and push it sideways into the hole",
        "grab the peg and slide it into the hole in the box",
        "put the peg in the side hole",
    ),
    "peg-unplug-side-v3": (
        "unplug the peg from the side",
        "pull the peg out of the hole sideways",
        "remove the peg from the box",
        "grab the peg and pull it out of its socket",
    ),
    "pick-out-of-hole-v3": (
        "pick the puck out of the hole",
        "lift the block up out of the hole",
        "take the puck out of the hole and raise it to the target",
        "grab the puck inside the hole and pull it out",
    ),
    "pick-place-v3": (
        "pick up the puck and place it at the goal",
        "move the puck to the target",
        "grab the block and put it at the goal position",
        "lift the puck and carry it to the target",
    ),
    "pick-place-wall-v3": (
        "pick up the puck and place it at the goal behind the wall",
        "carry the puck over the wall to the target",
        "lift the block past the wall and put it at the goal",
        "grab the puck and move it to the target on the other side of the wall",
    ),
    "plate-slide-back-side-v3": (
        "slide the plate out of the cabinet sideways",
        "pull the plate sideways out of the cabinet",
        "move the plate out of the cabinet to the side",
        "take the plate out of the cabinet by sliding it sideways",
    ),
    "plate-slide-back-v3": (
        "slide the plate back out of the cabinet",
        "pull the plate out of the cabinet towards you",
        "draw the plate back from the cabinet",
        "take the plate out of the cabinet by sliding it back",
    ),
    "plate-slide-side-v3": (
        "slide the plate sideways into the cabinet",
        "push the plate into the cabinet from the side",
        "move the plate sideways into the cabinet",
        "shove the plate to the side into the cabinet",
    ),
    "plate-slide-v3": (
        "slide the plate into the cabinet",
        "push the plate forward into the cabinet",
        "move the plate into the cabinet",
        "shove the plate into the cabinet",
    ),
    "push-back-v3": (
        "push the puck back to the goal",
        "slide the puck towards you to the target",
        "move the block backwards to the goal",
        "pull the puck back along the table to the target",
    ),
    "push-v3": (
        "push the puck to the goal",
        "slide the puck to the target",
        "move the block to the goal by pushing it",
        "nudge the puck along the table to the target",
    ),
    "push-wall-v3": (
        "push the puck around the wall to the goal",
        "slide the puck past the wall to the target",
        "move the block to the goal behind the wall",
        "push the puck to the target without hitting the wall",
    ),
    "reach-v3": (
        "reach the goal",
        "move the hand to the target",
        "bring the gripper to the goal position",
        "go to the target",
    ),
    "reach-wall-v3": (
        "reach the goal behind the wall",
        "move the hand over the wall to the target",
        "bring the gripper to the goal without hitting the wall",
        "go around the wall to the target",
    ),
    "shelf-place-v3": (
        "put the puck on the shelf",
        "pick up the puck and place it on the shelf",
        "lift the block onto the shelf",
        "move the puck up onto the shelf",
    ),
    "soccer-v3": (
        "kick the ball into the goal",
        "push the soccer ball into the net",
        "score a goal with the ball",
        "move the ball into the goal",
    ),
    "stick-pull-v3": (
        "use the stick to pull the box",
        "grab the stick and drag the box with it",
        "pick up the stick and pull the box to the target",
        "hook the box with the stick and pull it",
    ),
    "stick-push-v3": (
        "use the stick to push the box",
        "grab the stick and push the box with it",
        "pick up the stick and shove the box to the target",
        "push the box to the goal with the stick",
    ),
    "sweep-into-v3": (
        "sweep the puck into the hole",
        "push the puck into the hole in the table",
        "slide the block into the hole",
        "move the puck into the hole",
    ),
    "sweep-v3": (
        "sweep the puck off the table",
        "push the puck off the edge of the table",
        "slide the block off the side of the table",
        "knock the puck off the table",
    ),
    "window-close-v3": (
        "close the window",
        "slide the window shut",
        "push the window closed",
        "shut the sliding window",
    ),
    "window-open-v3": (
        "open the window",
        "slide the window open",
        "push the window open",
        "open the sliding window",
    ),
}


def paraphrases(task: str) -> tuple[str, ...]:
    """All instructions for `task` (e.g. "reach-v3"), the canonical one first."""
    try:
        return INSTRUCTIONS[task]
    except KeyError:
        raise KeyError(f"no instructions for {task!r}; Meta-World v3 task names look like 'reach-v3'") from None
