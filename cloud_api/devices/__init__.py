"""Devices: ingest of their messages, configuration and commands to them, enrolment."""
