"""The bus emulator's packets, byte for byte: documented examples, hand-computed checksums, and the SDKs' own framing."""

from __future__ import annotations

import os
import random
import select
import time

import pytest

from hardware.motors import dynamixel, feetech
from hardware.motors.emulator import (
    PING,
    READ,
    WRITE,
    BusEmulator,
    EmulatedMotor,
    dxl_crc,
    dxl_packet,
    dxl_status,
    parse_dxl,
    scs_packet,
    scs_status,
)


def _ask(emu: BusEmulator, packet: bytes, expect: int, timeout: float = 1.0) -> bytes:
    """Write raw bytes to the emulator's serial port and read `expect` bytes of answer (b'' if none came)."""
    fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, packet)
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                out += os.read(fd, 256)
        return out
    finally:
        os.close(fd)


def test_dynamixel_ping_packet_matches_the_documented_bytes():
    # ROBOTIS protocol 2.0 e-manual: PING to id 1.
    assert dxl_packet(1, PING) == bytes.fromhex("FF FF FD 00 01 03 00 01 19 4E")
    # ... and the documented reply of an XM430-W210 (model 1030 = 0x0406, firmware 0x26).
    assert dxl_status(1, 0, bytes([0x06, 0x04, 0x26])) == bytes.fromhex("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")


def test_dynamixel_crc_agrees_with_the_sdk_implementation():
    from dynamixel_sdk import Protocol2PacketHandler

    sdk = Protocol2PacketHandler()
    rng = random.Random(0)
    for n in (1, 7, 40, 300):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert dxl_crc(data) == sdk.updateCRC(0, list(data), n)


def test_dynamixel_byte_stuffing_agrees_with_the_sdk_and_the_emulator_undoes_it():
    """Data holding FF FF FD gets an extra FD on the wire; the emulator strips it before using the data."""
    from dynamixel_sdk import Protocol2PacketHandler

    params = bytes([65, 0, 0xFF, 0xFF, 0xFD])  # WRITE at address 65 (LED) and the next two: FF FF FD
    wire = dxl_packet(1, WRITE, params)
    # instruction 03, address 41 00, data FF FF FD, stuffing FD: 7 bytes + 2 of CRC = length 00 09
    assert wire[:14] == bytes.fromhex("FF FF FD 00 01 09 00 03 41 00 FF FF FD FD") and len(wire) == 16
    unstuffed = [0xFF, 0xFF, 0xFD, 0x00, 1, 8, 0, WRITE, *params, 0, 0]
    assert bytes(Protocol2PacketHandler().addStuffing(unstuffed)[:14]) == wire[:14]

    with BusEmulator("dynamixel", [EmulatedMotor(1, dynamixel.TABLE, "xl330-m288")]) as emu:
        reply = _ask(emu, wire, 11)
        [p] = emu.packets(WRITE)
        assert emu.motor(1).read_bytes(65, 3) == b"\xff\xff\xfd"
    assert p.raw == wire and p.params == params
    assert reply == dxl_status(1, 0)


def test_bus_refuses_a_write_that_dynamixel_sdk_would_send_unstuffed():
    """dynamixel_sdk 4.1.0's txPacket drops the list addStuffing returns, so such a packet would leave
    unstuffed and a motor could take its data for a new header: the bus refuses to send it."""
    from hardware.motors.bus import MotorBus, MotorBusError

    with BusEmulator("dynamixel", [EmulatedMotor(1, dynamixel.TABLE, "xl330-m288")]) as emu, \
            MotorBus(emu.port, 1_000_000, dynamixel.TABLE, [1]) as bus:
        with pytest.raises(MotorBusError, match="FF FF FD"):
            bus.write("Homing_Offset", 1, -131073)  # 0xFFFDFFFF: bytes FF FF FD FF
        assert emu.packets(WRITE) == []


def test_dynamixel_emulator_answers_a_raw_ping_with_the_documented_status():
    motor = EmulatedMotor(1, dynamixel.TABLE, "xm430-w210")
    motor.set("Firmware_Version", 0x26)
    with BusEmulator("dynamixel", [motor]) as emu:
        reply = _ask(emu, bytes.fromhex("FF FF FD 00 01 03 00 01 19 4E"), 14)
    assert reply == bytes.fromhex("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")


def test_dynamixel_emulator_ignores_a_packet_with_a_bad_crc():
    with BusEmulator("dynamixel", [EmulatedMotor(1, dynamixel.TABLE, "xl330-m288")]) as emu:
        assert _ask(emu, bytes.fromhex("FF FF FD 00 01 03 00 01 19 4F"), 14, timeout=0.2) == b""
        assert emu.bad_packets == 1 and emu.received == []


def test_feetech_packets_match_hand_computed_checksums():
    # checksum = ~(id + length + instruction + params) & 0xFF
    assert scs_packet(1, PING) == bytes.fromhex("FF FF 01 02 01 FB")            # ~(1+2+1) = ~0x04
    assert scs_packet(1, READ, bytes([0x38, 0x02])) == bytes.fromhex("FF FF 01 04 02 38 02 BE")  # ~0x41
    assert scs_status(1, 0) == bytes.fromhex("FF FF 01 02 00 FC")


def test_feetech_emulator_answers_raw_ping_and_read_of_present_position():
    with BusEmulator("feetech", [EmulatedMotor(1, feetech.TABLE, "sts3215", position=2048)]) as emu:
        assert _ask(emu, bytes.fromhex("FF FF 01 02 01 FB"), 6) == bytes.fromhex("FF FF 01 02 00 FC")
        # Present_Position (address 0x38, 2 bytes) = 2048 = 00 08 little-endian; ~(1+4+0+0+8) = 0xF2
        assert _ask(emu, bytes.fromhex("FF FF 01 04 02 38 02 BE"), 8) == bytes.fromhex("FF FF 01 04 00 00 08 F2")


def test_parse_leaves_an_incomplete_packet_for_the_next_read():
    whole = dxl_packet(3, READ, bytes([132, 0, 4, 0]))
    packet, used, dropped = parse_dxl(b"\x00\x13" + whole[:9])
    assert (packet, used, dropped) == (None, 2, False)      # noise consumed, the half packet kept
    packet, used, dropped = parse_dxl(whole)
    assert packet is not None and used == len(whole) and not dropped
    assert (packet.motor_id, packet.instruction, packet.params) == (3, READ, bytes([132, 0, 4, 0]))


@pytest.mark.parametrize("value", [0, 1, 2047, 4095, -1, -300])
def test_register_encodings_round_trip(value):
    from hardware.motors.bus import decode, encode

    dxl = dynamixel.TABLE["Goal_Position"]
    assert decode(dxl, encode(dxl, value)) == value
    sts = feetech.TABLE["Present_Velocity"]
    assert decode(sts, encode(sts, value)) == value
    if value == -300:  # sign-magnitude: bit 15 set, magnitude 300 = 0x012C
        assert encode(sts, value) == [0x2C, 0x81]
        assert encode(dxl, value) == list((-300 & 0xFFFFFFFF).to_bytes(4, "little"))
