"""codeintel: code intelligence for AI agents, from one laptop to a Kubernetes fleet."""

__version__ = "0.1.0"
