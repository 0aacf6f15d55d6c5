"""The controller's pure core: ``decide(state, event, now) -> (state, outputs)``; no I/O."""
