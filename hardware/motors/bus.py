"""`MotorBus`: named registers of a chain of servos, read and written through the vendor's SDK.

One bus is one serial port (a USB-TTL/RS-485 adapter, or the emulator's
pseudo-terminal) with motors of one series on it. The SDK
(`dynamixel_sdk` for Dynamixel protocol 2.0, `scservo_sdk` for Feetech)
frames the packets; this class adds what the SDKs leave to the caller:

- registers by name from a `ControlTable` (address, size, sign convention),
  with values as Python ints in the motor's own units (ticks, 0.229 rpm, ...);
- `sync_read(names)`: one SYNC READ over the span of addresses covering the
  registers asked for, decoded into one int array per register (in `ids` order);
- `sync_write(name, values)`: one SYNC WRITE of a register to every motor (no reply);
- `read` / `write` of one register of one motor, acknowledged by its status packet;
- a `MotorBusError` that names the motor id, the register and what to check
  when a status packet is missing, garbled (bad CRC / checksum) or reports an error.

Value encodings (`Register`): little-endian; `twos` for Dynamixel's signed
registers (two's complement); `sign_bit` for Feetech's sign-magnitude ones
(bit `sign_bit` set = negative, the rest the magnitude).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import numpy as np

BUS_EXTRA = "embodied[bus]"

# protocol -> (SDK module, argument of its PacketHandler(...)): Dynamixel protocol 2.0;
# Feetech STS/SMS with little-endian words ("end" 0; the older SCS series is big-endian, end 1).
SDKS: dict[str, tuple[str, float]] = {"dynamixel": ("dynamixel_sdk", 2.0), "feetech": ("scservo_sdk", 0)}


class MotorBusError(RuntimeError):
    """A bus transaction failed. motor_id: the motor whose status packet was missing or bad (None: the port)."""

    def __init__(self, message: str, motor_id: int | None = None):
        super().__init__(message)
        self.motor_id = motor_id


@dataclasses.dataclass(frozen=True)
class Register:
    """One control-table entry: address, size in bytes (1, 2 or 4) and sign convention."""

    address: int
    size: int
    twos: bool = False            # two's complement (Dynamixel)
    sign_bit: int | None = None   # sign-magnitude: this bit is the sign (Feetech)
    eeprom: bool = False          # kept across power cycles; Dynamixel only writes it with torque off

    def __post_init__(self) -> None:
        if self.size not in (1, 2, 4):
            raise ValueError(f"register size must be 1, 2 or 4 bytes, got {self.size}")


def encode(reg: Register, value: int) -> list[int]:
    """int -> the register's little-endian bytes. Raises if the value does not fit."""
    value = int(value)
    bits = 8 * reg.size
    if reg.sign_bit is not None:
        magnitude = abs(value)
        if magnitude >= 1 << reg.sign_bit:
            raise ValueError(f"{value} does not fit a sign-magnitude field with sign bit {reg.sign_bit}")
        raw = magnitude | ((1 << reg.sign_bit) if value < 0 else 0)
    elif reg.twos:
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise ValueError(f"{value} does not fit a signed {reg.size}-byte register")
        raw = value & ((1 << bits) - 1)
    else:
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{value} does not fit an unsigned {reg.size}-byte register")
        raw = value
    return list(raw.to_bytes(reg.size, "little"))


def decode(reg: Register, data: Sequence[int]) -> int:
    """The register's little-endian bytes -> int."""
    raw = int.from_bytes(bytes(data[: reg.size]), "little")
    if reg.sign_bit is not None:
        magnitude = raw & ((1 << reg.sign_bit) - 1)
        return -magnitude if raw >> reg.sign_bit & 1 else magnitude
    if reg.twos and raw >> (8 * reg.size - 1):
        return raw - (1 << (8 * reg.size))
    return raw


@dataclasses.dataclass(frozen=True)
class ControlTable:
    """The registers of one motor series, and the units of its position and velocity.

    resolution: position ticks per revolution. velocity_unit: rad/s per unit of
    its present-velocity register. models: model name -> model number (what PING / address 0 or 3 report).
    """

    series: str
    protocol: str
    registers: Mapping[str, Register]
    models: Mapping[str, int]
    resolution: int
    velocity_unit: float

    def __getitem__(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(f"{self.series} has no register {name!r}; it has {sorted(self.registers)}") from None

    def model_number(self, model: str) -> int:
        try:
            return self.models[model.lower()]
        except KeyError:
            raise ValueError(f"unknown {self.series} model {model!r}; known: {sorted(self.models)}") from None


def series(protocol: str) -> Any:
    """The module of a protocol's motor series (`hardware.motors.dynamixel` or `.feetech`): its TABLE,
    STATE_REGISTERS, configure(), clear_fault(), fault() and speed_units()."""
    if protocol not in SDKS:
        raise ValueError(f"unknown bus protocol {protocol!r}; use one of {sorted(SDKS)}")
    return importlib.import_module(f"hardware.motors.{protocol}")


def load_sdk(protocol: str) -> Any:
    """The vendor SDK module for a protocol, imported now; a missing one names the pip extra."""
    if protocol not in SDKS:
        raise ValueError(f"unknown bus protocol {protocol!r}; use one of {sorted(SDKS)}")
    name = SDKS[protocol][0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the {protocol} bus needs the vendor SDK {name!r}: pip install '{BUS_EXTRA}'",
                                  name=name) from e


class MotorBus:
    """Motors `ids` of one control table on one serial port.

    port: device path (/dev/ttyUSB0, COM3, or a pseudo-terminal). baudrate: bits/s, as set in the motors.
    retries: extra attempts of a read that got no valid status packet (a glitch on a real bus); writes
    of one register are retried the same way. Sync writes have no reply and are sent once.
    """

    def __init__(self, port: str, baudrate: int, table: ControlTable, ids: Sequence[int], retries: int = 1):
        if len(set(ids)) != len(ids) or not ids:
            raise ValueError(f"motor ids must be distinct and non-empty, got {list(ids)}")
        if not all(0 <= i <= 252 for i in ids):
            raise ValueError(f"motor ids must be in 0..252, got {list(ids)}")
        self.port_name, self.baudrate, self.table = port, int(baudrate), table
        self.ids = tuple(int(i) for i in ids)
        self.retries = int(retries)
        self.status_errors: dict[int, int] = {}   # the error byte of each motor's last status packet
        self._sdk: Any = None
        self._port: Any = None
        self._ph: Any = None
        self._readers: dict[tuple[int, int], Any] = {}

    # ---------------------------------------------------------------- port
    @property
    def is_connected(self) -> bool:
        return self._port is not None

    def connect(self) -> None:
        if self._port is not None:
            return
        sdk = load_sdk(self.table.protocol)
        port = sdk.PortHandler(self.port_name)
        try:
            opened = port.setBaudRate(self.baudrate)  # opens the port at this rate
        except Exception as e:  # pyserial's SerialException / OSError: no such device, permission
            raise MotorBusError(f"cannot open {self.port_name} ({e}); check the cable, the device path and that "
                                f"you may use it (Linux: add yourself to the 'dialout' group)") from e
        if not opened:
            raise MotorBusError(f"{self.port_name}: the {self.table.protocol} SDK does not support baud rate "
                                f"{self.baudrate}; use the rate the motors are set to (usually 1000000)")
        self._sdk, self._port = sdk, port
        self._ph = sdk.PacketHandler(SDKS[self.table.protocol][1])

    def disconnect(self) -> None:
        if self._port is not None:
            self._port.closePort()
            self._port = None
            self._readers.clear()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # ---------------------------------------------------------------- one motor
    def ping(self, motor_id: int) -> int:
        """The model number motor `motor_id` reports."""
        def once() -> tuple[int, int, int]:
            return self._ph.ping(self._port, motor_id)
        model, _ = self._transact(once, motor_id, "PING")
        return int(model)

    def check_models(self, models: Mapping[int, str]) -> None:
        """Ping every motor and compare its model number with the expected model name."""
        wrong = []
        for motor_id, model in models.items():
            found = self.ping(motor_id)
            if found != self.table.model_number(model):
                wrong.append(f"id {motor_id}: expected {model} ({self.table.model_number(model)}), found model "
                             f"number {found}")
        if wrong:
            raise MotorBusError(f"{self.port_name}: motors do not match the config: {'; '.join(wrong)}. "
                                f"Fix `models` in the robot config or the motors' ids.")

    def read(self, name: str, motor_id: int) -> int:
        """One register of one motor."""
        reg = self.table[name]

        def once() -> tuple[list[int], int, int]:
            return self._ph.readTxRx(self._port, motor_id, reg.address, reg.size)
        data, _ = self._transact(once, motor_id, f"reading {name}")
        if len(data) < reg.size:
            raise MotorBusError(f"motor id {motor_id} on {self.port_name}: status packet for {name} carried "
                                f"{len(data)} bytes, expected {reg.size}", motor_id)
        return decode(reg, data)

    def write(self, name: str, motor_id: int, value: int) -> None:
        """One register of one motor, acknowledged: raises if the motor reports an error (e.g. out of range)."""
        reg = self.table[name]
        data = encode(reg, value)
        self._check_stuffing(f"writing {name} = {value}", [reg.address & 0xFF, reg.address >> 8, *data])

        def once() -> tuple[None, int, int]:
            result, error = self._ph.writeTxRx(self._port, motor_id, reg.address, reg.size, data)
            return None, result, error
        self._transact(once, motor_id, f"writing {name} = {value}", check_error=True)

    # ---------------------------------------------------------------- every motor at once
    def sync_read(self, names: Iterable[str], ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Registers `names` of motors `ids` (default: all) in one SYNC READ -> {name: (n,) int64 in ids order}."""
        names = list(names)
        ids = self.ids if ids is None else tuple(ids)
        regs = [self.table[n] for n in names]
        start = min(r.address for r in regs)
        length = max(r.address + r.size for r in regs) - start
        reader = self._reader(start, length, ids)
        for attempt in range(self.retries + 1):
            try:
                raw = self._sync_read_once(reader, ids, length, names)
                break
            except MotorBusError:
                if attempt == self.retries:
                    raise
                self._drain()
        return {n: np.array([decode(r, raw[i][r.address - start:]) for i in ids], np.int64)
                for n, r in zip(names, regs)}

    def sync_write(self, name: str, values: Mapping[int, int] | Sequence[int]) -> None:
        """One register of many motors in one SYNC WRITE (no status packets come back).

        values: {id: value}, or a sequence in `self.ids` order.
        """
        self._require()
        reg = self.table[name]
        pairs = values.items() if isinstance(values, Mapping) else zip(self.ids, values)
        writer = self._sdk.GroupSyncWrite(self._port, self._ph, reg.address, reg.size)
        payload = [reg.address & 0xFF, reg.address >> 8, reg.size, 0]
        for motor_id, value in pairs:
            data = encode(reg, value)
            writer.addParam(int(motor_id), data)
            payload += [int(motor_id), *data]
        self._check_stuffing(f"sync write of {name}", payload)
        self._reset_input()
        result = writer.txPacket()
        if result != self._sdk.COMM_SUCCESS:
            raise MotorBusError(f"{self.port_name}: sync write of {name} failed: "
                                f"{self._ph.getTxRxResult(result)}; is the adapter still plugged in?")

    def set_torque(self, enabled: bool, ids: Sequence[int] | None = None) -> None:
        """Torque on/off, motor by motor with acknowledgement (a motor that did not hear it raises)."""
        for motor_id in self.ids if ids is None else ids:
            self.write("Torque_Enable", motor_id, int(enabled))

    # ---------------------------------------------------------------- internals
    def _require(self) -> None:
        if self._port is None:
            raise MotorBusError(f"{self.port_name}: the bus is not connected; call connect() first")

    def _check_stuffing(self, what: str, payload: list[int]) -> None:
        # Protocol 2.0 needs FF FF FD in a payload stuffed to FF FF FD FD, but dynamixel_sdk 4.1.0's
        # txPacket discards the stuffed copy and sends the packet as is, which a motor may read as a
        # new header. Positions and limits never contain that sequence; refuse whatever does.
        if self.table.protocol == "dynamixel" and bytes([0xFF, 0xFF, 0xFD]) in bytes(payload):
            raise MotorBusError(f"{self.port_name}: {what} would put bytes FF FF FD on the bus, which "
                                f"dynamixel_sdk sends without protocol 2.0's byte stuffing; refused")

    def _reset_input(self) -> None:
        # Bytes waiting now belong to no question we asked (a late reply to a failed one): drop them.
        # dynamixel_sdk does this itself; scservo_sdk's clearPort only flushes output.
        self._port.ser.reset_input_buffer()

    def _drain(self) -> None:
        time.sleep(0.002)  # let the rest of a broken reply arrive, then drop it
        self._reset_input()

    def _transact(self, once: Any, motor_id: int, what: str, check_error: bool = False) -> tuple[Any, int]:
        """Run an acknowledged transaction with retries; returns (payload, status error byte)."""
        self._require()
        for attempt in range(self.retries + 1):
            self._reset_input()
            payload, result, error = once()
            if result == self._sdk.COMM_SUCCESS:
                break
            if attempt == self.retries:
                raise self._comm_error(motor_id, what, result)
            self._drain()
        self.status_errors[motor_id] = int(error)
        if check_error and self._is_refusal(error):
            raise MotorBusError(f"motor id {motor_id} on {self.port_name} refused {what}: "
                                f"{self._ph.getRxPacketError(error)}", motor_id)
        return payload, int(error)

    def _is_refusal(self, error: int) -> bool:
        # Dynamixel: the low 7 bits are the refusal (range, limit, access, ...), 0x80 is a hardware alert
        # that is read from Hardware_Error_Status instead; Feetech's bits are all alarms (voltage,
        # overload, ...) that do not refuse the write.
        return self.table.protocol == "dynamixel" and bool(error & 0x7F)

    def _reader(self, start: int, length: int, ids: tuple[int, ...]) -> Any:
        key = (start, length, ids)
        if key not in self._readers:
            self._require()
            reader = self._sdk.GroupSyncRead(self._port, self._ph, start, length)
            for motor_id in ids:
                reader.addParam(motor_id)
            self._readers[key] = reader
        return self._readers[key]

    def _sync_read_once(self, reader: Any, ids: tuple[int, ...], length: int,
                        names: list[str]) -> dict[int, list[int]]:
        # The group's own rxPacket stops at the first bad reply without saying whose it was;
        # reading each motor's status packet here lets the error name the motor.
        self._reset_input()
        result = reader.txPacket()
        if result != self._sdk.COMM_SUCCESS:
            raise MotorBusError(f"{self.port_name}: sync read request failed: {self._ph.getTxRxResult(result)}")
        out: dict[int, list[int]] = {}
        for motor_id in ids:
            data, result, error = self._ph.readRx(self._port, motor_id, length)
            if result != self._sdk.COMM_SUCCESS:
                raise self._comm_error(motor_id, f"sync read of {names}", result)
            if len(data) < length:
                raise MotorBusError(f"motor id {motor_id} on {self.port_name}: its status packet in the sync read "
                                    f"of {names} carried {len(data)} bytes, expected {length}", motor_id)
            self.status_errors[motor_id] = int(error)
            out[motor_id] = list(data)
        return out

    def _comm_error(self, motor_id: int, what: str, result: int) -> MotorBusError:
        sdk = self._sdk
        if result == sdk.COMM_RX_CORRUPT:
            why = "its status packet was garbled (bad CRC/checksum or cut short)"
        elif result == sdk.COMM_RX_TIMEOUT:
            why = "no status packet came back"
        else:
            why = self._ph.getTxRxResult(result)
        return MotorBusError(
            f"motor id {motor_id} on {self.port_name} ({self.table.series}): {why} while {what}"
            f" (after {self.retries + 1} attempts). Check that motor's cable and power, that its id and baud "
            f"rate ({self.baudrate}) match the config, and that no other program has the port open.", motor_id)
