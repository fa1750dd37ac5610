"""codeintel.indexer"""
