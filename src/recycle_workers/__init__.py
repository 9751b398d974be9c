"""recycle-workers: Celery stages that turn a photo and a question into disposal guidance."""

__version__ = "0.1.0"
