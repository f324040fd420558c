"""`questlog bench <scenario>`: figures a user can trust, measured on a real stack.

One module per scenario (`append`, `load`, `reconnect_storm`, `rebuild`,
`chaos`) and the pieces they share: the stack they start (`stack`), latency
statistics (`stats`), process and machine readings (`procfs`), the players
that speak the protocol (`players`), log checks (`checks`), the progress
display (`display`) and the result file (`results`). Benchmarks print figures;
no test asserts them.
"""
