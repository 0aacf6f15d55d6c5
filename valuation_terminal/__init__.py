"""The valuation terminal's daemon: today its presence on the broker (``linli terminal``);
camera, scale, rules and kiosk arrive in issue #9."""
