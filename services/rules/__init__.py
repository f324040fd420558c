"""The game's pure core: content (catalog), formulas, commands, decide and the engine.

The engine, what the processor and the reward service append, is split by concern:
requirements (what a task needs, and the sentences when it is missing), rewards (what
a step earns, by activity) and scheduling (starts, steps, retries and catch-up).

No I/O here: services load state, call these functions, and append what they return.
"""
