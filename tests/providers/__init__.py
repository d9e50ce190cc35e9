"""Provider adapters against local servers that speak each protocol."""
