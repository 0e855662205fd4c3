"""Names of the robots in this package (imports nothing heavy): each is `hardware.robots:make_robot`
with its limits file `hardware/configs/<name>.toml`."""

from embodied.registry import register

for _name, _extra, _what in (
    ("sim-twin", "sim", "the MuJoCo tabletop behind the robot interface, in real time (no hardware)"),
    ("franka", "franka", "Franka Panda / FR3 through franky (libfranka); rehearse with franky-sim"),
    ("ur5e", "ur", "Universal Robots UR5e through ur_rtde (servoL, watchdog)"),
    ("xarm7", "xarm", "UFACTORY xArm7 through xarm-python-sdk (servo mode)"),
    ("so100", "bus", "SO-100 low-cost arm on a Feetech STS3215 bus"),
    ("koch", "bus", "Koch v1.1 low-cost arm on a Dynamixel protocol 2.0 bus"),
):
    register(_name, "hardware.robots:make_robot", kind="robot", config=_name, extra=_extra,
             description=_what)

register("remote", "hardware.client:RemoteRobot", kind="robot", extra="hardware",
         description="a robot served by `embodied serve` elsewhere: RemoteRobot(address='tcp://host:5555')")
