"""Serial-bus servo motors (Dynamixel protocol 2.0, Feetech STS/SCS) for low-cost arms.

- `bus`: `MotorBus`, sync read / sync write of named registers through the vendor SDK.
- `dynamixel`, `feetech`: each series' control table and the safety settings it offers.
- `calibration`: per-motor homing offset, direction and range as a JSON file.
- `emulator`: a pseudo-terminal that answers like a bus of real motors (for tests and rehearsal).

The vendor SDKs (`dynamixel_sdk`, `scservo_sdk`) are imported only when a bus connects:
`pip install 'embodied[bus]'`.
"""
