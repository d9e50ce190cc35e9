"""Domain services: every change to data goes through one of these, with its role check."""
