"""The operator dashboard (/dashboard) and its static files."""
