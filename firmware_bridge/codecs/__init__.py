"""Sans-I/O codecs of the serial devices Linli speaks: bytes in → events out, commands in → bytes
out. No ports, threads, sleeps or clocks: the transports (:mod:`firmware_bridge.transport`) and the
simulators (:mod:`firmware_bridge.sim`) bring those."""
