"""Serial devices Linli speaks: RS485 lock-control boards (Kerong KR-CU16 / CU12, Waveshare
Modbus RTU relay boards) and weighing scales (A&D, the common Chinese continuous format,
Mettler Toledo MT-SICS).

- ``codecs/``: pure, sans-I/O codecs, both directions (decision 0014).
- ``transport.py``: pyserial by URL; one owner per port, reads retried, unlocks never.
- ``lockbus.py``: the boards behind the controller's ``LockBus`` port
  (locker_controller/lockbus.py).
- ``scale.py``: a serial scale behind the terminal's scale port (valuation_terminal/scale.py).
- ``sim/``: boards and scales simulated byte for byte on pseudo-terminals.
- ``cli.py``: ``linli bus scan``, ``linli bus selftest``, ``linli scale read``.
"""
