"""Training loops (plain PyTorch, testable without Ray) and their Ray Train wrappers."""
