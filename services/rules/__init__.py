"""The game's pure core: content (catalog), formulas, commands, decide and the engine.

No I/O here: services load state, call these functions, and append what they return.
"""
