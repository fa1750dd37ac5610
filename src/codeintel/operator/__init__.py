"""codeintel.operator"""
