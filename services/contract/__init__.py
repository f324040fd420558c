"""The client contract in code: methods, their params, error codes, and the commands service's request/reply."""
