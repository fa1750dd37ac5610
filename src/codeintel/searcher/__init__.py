"""codeintel.searcher"""
