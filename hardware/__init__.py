"""Hardware as data: board definitions and pin maps, validated before any relay moves."""
