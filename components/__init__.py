"""EulerNet FAS library: pure, importable, no work at import time."""
