"""The layer under everything: settings, errors, the store format, embedders, git access."""
