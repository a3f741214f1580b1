"""Frontends: PyTorch models into our IR (torch.export now; torch-mlir is planned)."""
