"""Device layer: pumps, balance, barcode scanners and labels.

Nothing here imports Flask or database code. Drivers talk to devices through
``serial.serial_for_url`` so a device path, a pty and ``socket://`` share one code
path; the simulators in ``devices.simulators`` speak the same bytes on a pty.
See ``devices/README.md`` for the module map and the calls other layers use.
"""
