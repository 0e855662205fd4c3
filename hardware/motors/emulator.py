"""An emulated serial bus of servos: a pseudo-terminal whose far end answers like real motors.

`BusEmulator` opens a pty pair; its slave path (`/dev/pts/N`) is what a
driver opens as its serial port, through the vendor SDK and pyserial exactly
as it would open `/dev/ttyUSB0`. A thread reads the master end, parses each
instruction packet, and answers with real status packets:

- Dynamixel protocol 2.0: header FF FF FD 00, id, 2-byte length, instruction,
  parameters with byte stuffing (FF FF FD -> FF FF FD FD), CRC-16 (polynomial
  0x8005, as ROBOTIS specifies) low byte first. Status packets use
  instruction 0x55 and carry an error byte.
- Feetech (SCS protocol, Dynamixel protocol 1.0 style): header FF FF, id,
  length (= parameters + 2), instruction or error byte, parameters, checksum
  = ~(id + length + ... ) & 0xFF.

Instructions served: PING, READ, WRITE, SYNC READ (0x82), SYNC WRITE (0x83).

Each `EmulatedMotor` holds its control table as 256 bytes of memory, laid
out by the same `ControlTable` the driver uses, and moves its position
toward the goal at constant speed (its `max_speed`, capped by the profile
velocity / running speed registers; acceleration is not modelled) while its
torque is on. What the motors enforce is emulated too, because that is what
the tests check the driver against:

- Dynamixel: EEPROM writes with torque on are refused (access error); a goal
  outside Min/Max_Position_Limit is refused (data limit error); the bus
  watchdog (address 98, 20 ms units) stops the motor where it is when no
  instruction packet reached it for that long, sets the register to -1 and
  refuses goal writes until 0 is written.
- Feetech: a goal is clamped into Min/Max_Position_Limit.

For tests: `received` is every instruction packet with its arrival time,
byte for byte as it came off the wire; `corrupt_replies(id)` spoils the CRC /
checksum of a motor's status packets; `motor(id).move_by_hand(ticks)` turns a
torque-off motor as a person would. The bus runs in a process of its own
(see `BusEmulator`); `motor(id)` reads the motor's state from there.
"""

from __future__ import annotations

import dataclasses
import os
import select
import time
import tty
from collections.abc import Sequence
from typing import Any, Self

from hardware.motors.bus import ControlTable, Register, decode, encode, series

PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST_ID = 0xFE
DXL_HEADER = b"\xff\xff\xfd\x00"
DXL_STATUS = 0x55
# Dynamixel status error numbers (the low 7 bits of the error byte)
DXL_INSTRUCTION_ERROR, DXL_DATA_RANGE_ERROR, DXL_DATA_LIMIT_ERROR, DXL_ACCESS_ERROR = 2, 4, 6, 7
DEFAULT_MAX_SPEED = 3000.0  # ticks/s (~4.6 rad/s), about an STS3215 or XL330 unloaded


# ---------------------------------------------------------------- Dynamixel protocol 2.0 framing
def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def dxl_crc(data: bytes) -> int:
    """CRC-16 of protocol 2.0 (poly 0x8005, initial 0, not reflected) over header..last parameter."""
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def dxl_stuff(body: bytes) -> bytes:
    """Insert FD after every FF FF FD in instruction+parameters, so the payload never looks like a header."""
    out = bytearray()
    for b in body:
        out.append(b)
        if out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def dxl_unstuff(body: bytes) -> bytes:
    out = bytearray()
    for b in body:
        if b == 0xFD and out[-3:] == b"\xff\xff\xfd":
            continue  # the stuffing byte after FF FF FD
        out.append(b)
    return bytes(out)


def dxl_packet(motor_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete protocol 2.0 packet: header, id, length, stuffed instruction+params, CRC (low byte first)."""
    body = dxl_stuff(bytes([instruction]) + bytes(params))
    head = DXL_HEADER + bytes([motor_id]) + (len(body) + 2).to_bytes(2, "little") + body
    return head + dxl_crc(head).to_bytes(2, "little")


def dxl_status(motor_id: int, error: int, params: bytes = b"") -> bytes:
    return dxl_packet(motor_id, DXL_STATUS, bytes([error]) + bytes(params))


# ---------------------------------------------------------------- Feetech (SCS) framing
def scs_checksum(body: bytes) -> int:
    """~(id + length + instruction/error + parameters) & 0xFF."""
    return ~sum(body) & 0xFF


def scs_packet(motor_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete SCS packet: FF FF, id, length (= params + 2), instruction (or status error), params, checksum."""
    body = bytes([motor_id, len(params) + 2, instruction]) + bytes(params)
    return b"\xff\xff" + body + bytes([scs_checksum(body)])


def scs_status(motor_id: int, error: int, params: bytes = b"") -> bytes:
    return scs_packet(motor_id, error, params)


@dataclasses.dataclass(frozen=True)
class Packet:
    """One parsed instruction packet. params: unstuffed parameters. raw: the bytes as they came."""

    motor_id: int
    instruction: int
    params: bytes
    raw: bytes
    time: float


def parse_dxl(buf: bytes) -> tuple[Packet | None, int, bool]:
    """The first packet in `buf`: (packet or None, bytes consumed, a packet with a bad CRC was dropped).

    Bytes before a header are noise and consumed; an incomplete packet is left for the next read.
    """
    start = buf.find(DXL_HEADER)
    if start < 0:
        return None, max(0, len(buf) - 3), False
    if len(buf) < start + 7:
        return None, start, False
    end = start + 7 + int.from_bytes(buf[start + 5:start + 7], "little")
    if len(buf) < end:
        return None, start, False
    raw = bytes(buf[start:end])
    if end - start < 10 or dxl_crc(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        return None, end, True
    body = dxl_unstuff(raw[7:-2])
    return Packet(raw[4], body[0], body[1:], raw, time.monotonic()), end, False


def parse_scs(buf: bytes) -> tuple[Packet | None, int, bool]:
    """As `parse_dxl`, for SCS packets and their checksum."""
    start = buf.find(b"\xff\xff")
    if start < 0:
        return None, max(0, len(buf) - 1), False
    while start + 2 < len(buf) and buf[start + 2] == 0xFF:
        start += 1  # FF FF FF id ...: the header is the last two FFs
    if len(buf) < start + 4:
        return None, start, False
    end = start + 4 + buf[start + 3]
    if len(buf) < end:
        return None, start, False
    raw = bytes(buf[start:end])
    if end - start < 6 or scs_checksum(raw[2:-1]) != raw[-1]:
        return None, end, True
    return Packet(raw[2], raw[4], raw[5:-1], raw, time.monotonic()), end, False


@dataclasses.dataclass(frozen=True)
class Framing:
    """How one protocol frames packets: parse, status, and the width of address/length fields."""

    parse: Any
    status: Any
    field_bytes: int  # 2 for Dynamixel 2.0 addresses/lengths, 1 for SCS


FRAMINGS = {"dynamixel": Framing(parse_dxl, dxl_status, 2), "feetech": Framing(parse_scs, scs_status, 1)}


# ---------------------------------------------------------------- one motor
class EmulatedMotor:
    """One servo: `ControlTable` memory plus a shaft that moves toward the goal while torque is on.

    position: start position (ticks). max_speed: ticks/s at full speed.
    """

    def __init__(self, motor_id: int, table: ControlTable, model: str, position: float = 2048.0,
                 max_speed: float = DEFAULT_MAX_SPEED):
        self.id, self.table, self.model = int(motor_id), table, model
        self.memory = bytearray(256)
        self.position = float(position)
        self.max_speed = float(max_speed)
        self.velocity = 0.0                   # ticks/s
        self.last_packet_at = time.monotonic()
        self.watchdog_tripped_at: float | None = None
        self.refused: list[tuple[str, int, int]] = []   # (register, value, error) the motor would not take
        self.set("Model_Number", table.model_number(model))
        self.set("ID", self.id)
        self.set("Min_Position_Limit", 0)
        self.set("Max_Position_Limit", table.resolution - 1)
        self.set("Goal_Position", round(position))
        if self.dynamixel:
            self.set("Firmware_Version", 52)
        self._publish()

    @property
    def dynamixel(self) -> bool:
        return self.table.protocol == "dynamixel"

    # direct access, as a test or a person with a screwdriver would have it (no protocol involved)
    def get(self, name: str) -> int:
        reg = self.table[name]
        return decode(reg, self.memory[reg.address:reg.address + reg.size])

    def set(self, name: str, value: int) -> None:
        reg = self.table[name]
        self.memory[reg.address:reg.address + reg.size] = bytes(encode(reg, value))

    @property
    def torque(self) -> bool:
        return self.get("Torque_Enable") == 1

    def move_by_hand(self, ticks: float) -> None:
        """Turn the horn to `ticks` by hand: only a torque-off motor can be back-driven."""
        if self.torque:
            raise RuntimeError(f"motor {self.id} has torque on; it cannot be moved by hand")
        self.position = float(ticks)
        self._publish()

    # ---------------------------------------------------------------- protocol side
    def read_bytes(self, address: int, length: int) -> bytes:
        return bytes(self.memory[address:address + length])

    def write_bytes(self, address: int, data: bytes) -> int:
        """A WRITE of `data` at `address`; returns the status error number (0 = accepted)."""
        regs = [(n, r) for n, r in self.table.registers.items() if address <= r.address < address + len(data)]
        if self.dynamixel:
            error = self._dxl_refusal(address, data, regs)
            if error:
                return error
        self.memory[address:address + len(data)] = data
        for name, _ in regs:
            self._on_write(name)
        return 0

    def _dxl_refusal(self, address: int, data: bytes, regs: list[tuple[str, Register]]) -> int:
        for name, reg in regs:
            value = decode(reg, data[reg.address - address:])
            error = 0
            if reg.eeprom and self.torque:
                error = DXL_ACCESS_ERROR
            elif name.startswith("Goal_") and self.get("Bus_Watchdog") == -1:
                error = DXL_DATA_RANGE_ERROR
            elif name == "Goal_Position" and not (self.get("Min_Position_Limit") <= value
                                                  <= self.get("Max_Position_Limit")):
                error = DXL_DATA_LIMIT_ERROR
            if error:
                self.refused.append((name, value, error))
                return error
        return 0

    def _on_write(self, name: str) -> None:
        if name == "Goal_Position" and not self.dynamixel:
            lo, hi = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
            if lo < hi:  # both 0 would be the multi-turn setting: no clamp
                self.set("Goal_Position", min(max(self.get("Goal_Position"), lo), hi))
        if name == "Bus_Watchdog" and self.get("Bus_Watchdog") == 0:
            self.watchdog_tripped_at = None
        if name == "Torque_Enable" and not self.torque:
            self.velocity = 0.0

    def heard(self, now: float) -> None:
        """An instruction packet for this motor arrived (what the bus watchdog counts)."""
        self.last_packet_at = now

    # ---------------------------------------------------------------- physics
    def speed_limit(self) -> float:
        """ticks/s: max_speed capped by the profile velocity (Dynamixel) / running speed (Feetech) register."""
        if self.dynamixel:
            units = self.get("Profile_Velocity")
            cap = units * self.table.velocity_unit / (2 * 3.141592653589793 / self.table.resolution)
        else:
            cap = abs(self.get("Goal_Velocity"))
        return min(self.max_speed, cap) if cap > 0 else self.max_speed

    def step(self, now: float, dt: float) -> None:
        if self.dynamixel:
            self._watchdog(now)
        if self.torque and self.watchdog_tripped_at is None:
            error = self.get("Goal_Position") - self.position
            move = max(-self.speed_limit() * dt, min(self.speed_limit() * dt, error))
            self.position += move
            self.velocity = move / dt if dt > 0 else 0.0
        else:
            self.velocity = 0.0
        self._publish()

    def _watchdog(self, now: float) -> None:
        units = self.get("Bus_Watchdog")
        if self.torque and 1 <= units <= 127 and now - self.last_packet_at > units * 0.02:
            # Stop where it is: the goal becomes the present position and is locked until cleared.
            self.set("Goal_Position", round(self.position))
            self.set("Bus_Watchdog", -1)
            self.watchdog_tripped_at = now

    def _publish(self) -> None:
        self.set("Present_Position", min(max(round(self.position), 0), self.table.resolution - 1)
                 if not self.dynamixel else round(self.position))
        ticks_per_unit = self.table.velocity_unit / (2 * 3.141592653589793 / self.table.resolution)
        self.set("Present_Velocity", round(self.velocity / ticks_per_unit))


# ---------------------------------------------------------------- the bus, in its own process
class BusModel:
    """The motors of one bus and how they answer packets; no I/O (the serving loop feeds it bytes)."""

    def __init__(self, protocol: str, motors: Sequence[EmulatedMotor]):
        self.protocol = protocol
        self.framing = FRAMINGS[protocol]
        self.motors = {m.id: m for m in motors}
        self.received: list[Packet] = []
        self.bad_packets = 0
        self._corrupt: dict[int, int | None] = {}
        self._buf = bytearray()

    def feed(self, data: bytes, now: float) -> bytes:
        """Bytes from the host -> the status packets to send back."""
        self._buf += data
        out = b""
        while True:
            packet, used, dropped = self.framing.parse(self._buf)
            self.bad_packets += dropped
            del self._buf[:used]
            if packet is None:
                if dropped:
                    continue
                return out
            # Stamped with the read's time, the clock the bus watchdog counts from, so that
            # "stopped N ms after the last packet" compares like with like.
            packet = dataclasses.replace(packet, time=now)
            self.received.append(packet)
            out += self._handle(packet, now)

    def step(self, now: float, dt: float) -> None:
        for m in self.motors.values():
            m.step(now, dt)

    def corrupt_replies(self, motor_id: int, count: int | None = None) -> None:
        if count == 0:
            self._corrupt.pop(motor_id, None)
        else:
            self._corrupt[motor_id] = count

    def packets(self, instruction: int | None = None, since: float = 0.0) -> list[Packet]:
        return [p for p in self.received if (instruction is None or p.instruction == instruction)
                and p.time >= since]

    # ---------------------------------------------------------------- instructions
    def _status(self, motor: EmulatedMotor, error: int, params: bytes = b"") -> bytes:
        packet = self.framing.status(motor.id, error, params)
        if motor.id in self._corrupt:
            packet = packet[:-1] + bytes([packet[-1] ^ 0x5A])  # flip bits of the CRC/checksum
            count = self._corrupt[motor.id]
            if count is not None:
                if count <= 1:
                    self._corrupt.pop(motor.id)
                else:
                    self._corrupt[motor.id] = count - 1
        return packet

    def _field(self, params: bytes, index: int) -> int:
        w = self.framing.field_bytes
        return int.from_bytes(params[index * w:(index + 1) * w], "little")

    def _handle(self, p: Packet, now: float) -> bytes:
        w = self.framing.field_bytes
        if p.instruction in (SYNC_READ, SYNC_WRITE):
            address, length = self._field(p.params, 0), self._field(p.params, 1)
            rest = p.params[2 * w:]
            if p.instruction == SYNC_READ:  # each listed motor answers in turn
                out = b""
                for motor_id in rest:
                    if motor_id in self.motors:
                        m = self.motors[motor_id]
                        m.heard(now)
                        out += self._status(m, 0, m.read_bytes(address, length))
                return out
            for k in range(0, len(rest) - length, length + 1):  # [id, data(length)] per motor, no replies
                motor_id = rest[k]
                if motor_id in self.motors:
                    self.motors[motor_id].heard(now)
                    self.motors[motor_id].write_bytes(address, rest[k + 1:k + 1 + length])
            return b""
        targets = list(self.motors.values()) if p.motor_id == BROADCAST_ID else \
            [self.motors[p.motor_id]] if p.motor_id in self.motors else []
        out = b""
        for m in targets:
            m.heard(now)
            error, params = self._single(m, p)
            if p.motor_id != BROADCAST_ID:
                out += self._status(m, error, params)
        return out

    def _single(self, m: EmulatedMotor, p: Packet) -> tuple[int, bytes]:
        w = self.framing.field_bytes
        if p.instruction == PING:
            if self.protocol == "dynamixel":  # model number and firmware version
                return 0, m.read_bytes(0, 2) + bytes([m.get("Firmware_Version")])
            return 0, b""
        if p.instruction == READ:
            return 0, m.read_bytes(self._field(p.params, 0), self._field(p.params, 1))
        if p.instruction == WRITE:
            return m.write_bytes(self._field(p.params, 0), p.params[w:]), b""
        return (DXL_INSTRUCTION_ERROR if self.protocol == "dynamixel" else 0), b""


_CALLABLE = "<callable>"


def _serve(conn: Any, protocol: str, motors: Sequence[EmulatedMotor], tick_s: float) -> None:
    """The emulator process: open the pty, tell the parent its path, then answer packets and calls."""
    model = BusModel(protocol, motors)
    master, slave = os.openpty()
    # Raw mode on our side too: no echo, no CR/LF translation, no flow-control bytes eaten.
    # We keep the slave open so that the master does not see EOF when a driver closes the port.
    tty.setraw(slave)
    conn.send(os.ttyname(slave))
    last = time.monotonic()
    while True:
        ready, _, _ = select.select([master, conn], [], [], tick_s)
        now = time.monotonic()
        if master in ready:
            reply = model.feed(os.read(master, 4096), now)
            view = memoryview(reply)
            while view:
                view = view[os.write(master, view):]
        if conn in ready:
            try:
                request = conn.recv()
            except EOFError:
                return  # the parent is gone
            if request is None:
                conn.send(None)
                return
            conn.send(_call(model, request))
        model.step(now, now - last)
        last = now


def _call(model: BusModel, request: tuple[Any, ...]) -> tuple[bool, Any]:
    """(ok, value): a method or attribute of the model, or of one motor when the request names one."""
    motor_id, name, args = request
    target = model if motor_id is None else model.motors[motor_id]
    try:
        attr = getattr(target, name)
        if args is None:
            return True, _CALLABLE if callable(attr) else attr
        return True, attr(*args)
    except Exception as e:  # noqa: BLE001 -- sent back and raised in the parent
        return False, e


class BusEmulator:
    """Motors of one protocol behind a pseudo-terminal, served by a process of their own.

    Use as a context manager; `port` is the path a driver opens. A process (not a thread) because the
    SDKs poll the port in a busy loop that would starve a thread of this interpreter, and a real bus
    does not share the host's interpreter either. `motor(id)` and the attributes below are fetched from
    that process on each use. tick_s: how often the motors' physics and watchdogs are updated (s).
    """

    def __init__(self, protocol: str, motors: Sequence[EmulatedMotor], tick_s: float = 0.001):
        if protocol not in FRAMINGS:
            raise ValueError(f"unknown bus protocol {protocol!r}; use one of {sorted(FRAMINGS)}")
        self.protocol = protocol
        self.framing = FRAMINGS[protocol]
        self.ids = tuple(m.id for m in motors)
        self._motors = list(motors)
        self.tick_s = tick_s
        self.port = ""
        self._conn: Any = None
        self._process: Any = None

    @classmethod
    def for_arm(cls, protocol: str, ids: Sequence[int], models: Sequence[str],
                positions: Sequence[float] | None = None, max_speed: float = DEFAULT_MAX_SPEED) -> BusEmulator:
        table = series(protocol).TABLE
        positions = positions or [table.resolution // 2] * len(ids)
        return cls(protocol, [EmulatedMotor(i, table, m, p, max_speed) for i, m, p in zip(ids, models, positions)])

    def start(self) -> BusEmulator:
        if self._process is None:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._process = ctx.Process(target=_serve, args=(child, self.protocol, self._motors, self.tick_s),
                                        name="bus-emulator", daemon=True)
            self._process.start()
            child.close()
            if not self._conn.poll(30):
                self.close()
                raise RuntimeError("the bus emulator process did not start")
            self.port = self._conn.recv()
        return self

    def close(self) -> None:
        if self._process is not None:
            try:
                self._conn.send(None)
                self._conn.poll(2.0)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=2.0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._conn.close()
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remote(self, motor_id: int | None, name: str, args: tuple[Any, ...] | None) -> Any:
        if self._process is None:
            raise RuntimeError("the bus emulator is not running; use it as a context manager or call start()")
        self._conn.send((motor_id, name, args))
        ok, value = self._conn.recv()
        if not ok:
            raise value
        return value

    # ---------------------------------------------------------------- what tests look at
    def motor(self, motor_id: int) -> MotorView:
        if motor_id not in self.ids:
            raise KeyError(f"no motor {motor_id} on this bus; ids {self.ids}")
        return MotorView(self, motor_id)

    @property
    def received(self) -> list[Packet]:
        """Every instruction packet so far, with its arrival time (time.monotonic, same clock as ours)."""
        return self._remote(None, "received", None)

    @property
    def bad_packets(self) -> int:
        return self._remote(None, "bad_packets", None)

    def packets(self, instruction: int | None = None, since: float = 0.0) -> list[Packet]:
        return self._remote(None, "packets", (instruction, since))

    def corrupt_replies(self, motor_id: int, count: int | None = None) -> None:
        """Spoil the CRC/checksum of motor `motor_id`'s next `count` status packets (None: all; 0: stop)."""
        self._remote(None, "corrupt_replies", (motor_id, count))


class MotorView:
    """One emulated motor as seen from the test's process: `EmulatedMotor`'s attributes and methods, remotely."""

    def __init__(self, emulator: BusEmulator, motor_id: int):
        self._emulator, self.id = emulator, motor_id

    def __getattr__(self, name: str) -> Any:
        value = self._emulator._remote(self.id, name, None)
        if isinstance(value, str) and value == _CALLABLE:
            return lambda *args: self._emulator._remote(self.id, name, args)
        return value
