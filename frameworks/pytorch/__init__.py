"""PyTorch implementation: torch.nn modules, NCHW tensors, eager training loop."""
