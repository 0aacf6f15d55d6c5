"""Serial protocols of real lock-control boards and scales (Kerong, Waveshare Modbus, A&D,
MT-SICS): sans-I/O codecs, thin pyserial transports and simulators. Built in issue #5, behind the
controller's ``LockBus`` protocol (locker_controller/daemon.py) and a scale port for the terminal.
"""
