"""Cross-cutting pieces every feature may import; it imports no feature."""
