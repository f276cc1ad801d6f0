"""Framework-neutral pieces shared by every implementation: NumPy only, no framework imports."""
