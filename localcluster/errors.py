"""The one error type the test bed raises: it always says what failed and how to fix it."""


class LocalClusterError(RuntimeError):
    """A step of building, starting or stopping the local control plane failed."""
