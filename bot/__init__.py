"""clipbot's entry point: settings, the command line and the composition root."""
