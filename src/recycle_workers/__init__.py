"""recycle-workers: Celery stages turning photo and question into disposal guidance."""

__version__ = "0.1.0"
