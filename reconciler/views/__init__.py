"""One module per output that is not a plan: state JSON, outputs, SSH configuration."""
